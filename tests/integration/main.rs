mod support;

mod linstor_sim;

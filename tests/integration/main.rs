mod support;

mod cf_sim;
mod linstor_sim;

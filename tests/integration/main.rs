mod support;

mod cf_sim;
mod gateway;
mod linstor_sim;

mod support;

mod linstor_sim;
mod linstor_sim_contract;

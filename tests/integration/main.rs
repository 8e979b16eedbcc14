mod cf_sim;

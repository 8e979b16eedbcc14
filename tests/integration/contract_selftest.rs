use crate::support::contract::Contract;
use std::time::Instant;

#[test]
fn explore() {
    for load in [Contract::linstor, Contract::cloudflare] {
        let c = load().unwrap();
        let t = Instant::now();
        let f = c.precompile_all();
        eprintln!("{} load {:?} precompile {:?} failures {}", c.title(), c.load_time(), t.elapsed(), f.len());
        for x in f.iter().take(20) { eprintln!("  {x}"); }
    }
}

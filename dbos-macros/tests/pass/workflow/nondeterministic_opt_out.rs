//! `#[nondeterministic]` exempts one statement from the determinism check, and is removed.

use dbos_macros::workflow;

#[workflow]
async fn logs_its_start(x: u32) -> Result<u32, dbos_core::Error> {
    #[nondeterministic]
    let started = std::time::Instant::now();
    #[nondeterministic = "only logged"]
    println!("started at {:?}", std::time::SystemTime::now());
    if x > 1 {
        #[nondeterministic]
        {
            let elapsed = started.elapsed();
            println!("{elapsed:?}");
        }
    }
    Ok(x)
}

#[test]
fn a_statement_marked_nondeterministic_is_exempt() {
    let _call = logs_its_start(1);
}

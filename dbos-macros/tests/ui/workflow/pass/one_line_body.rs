#![deny(warnings)]

use dbos_macros::{step, workflow};

#[step]
async fn double(x: u32) -> Result<u32, dbos_core::Error> { Ok(x * 2) }

#[workflow]
async fn quick(x: u32) -> Result<u32, dbos_core::Error> { double(x).await }

fn main() {
    let _ = quick(1);
}

#![deny(warnings)]

use dbos_macros::{step, workflow};

#[step]
async fn double(x: u32) -> Result<u32, dbos_core::Error> { Ok(x * 2) }

#[step]
async fn always_panics() -> Result<u32, dbos_core::Error> {
    panic!("a body that diverges is no warning either");
}

#[workflow]
async fn quick(x: u32) -> Result<u32, dbos_core::Error> { double(x).await }

#[workflow]
async fn diverges() -> Result<u32, dbos_core::Error> {
    always_panics().await?;
    unreachable!("the step panics")
}

#[test]
fn one_line_and_diverging_bodies_expand_without_warnings() {
    let _ = quick(1);
    let _ = diverges();
}

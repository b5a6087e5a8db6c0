use dbos_macros::step;

// A step's output is recorded and decoded again on replay, so it must own its data.
#[step]
async fn first_word(text: String) -> Result<&'static str, dbos_core::Error> {
    Ok(if text.is_empty() { "" } else { "word" })
}

async fn caller() -> Result<usize, dbos_core::Error> {
    Ok(first_word("a b".into()).await?.len())
}

fn main() {
    let _ = caller();
}

use dbos_macros::workflow;

pub struct Card {
    pub number: String,
}

#[workflow]
async fn checkout(card: Card) -> Result<String, dbos_core::Error> {
    Ok(card.number)
}

fn main() {}

use dbos_macros::step;

pub struct Card {
    pub number: String,
}

#[step(max_attempts = 3)]
async fn charge(card: Card, cents: i64) -> Result<String, dbos_core::Error> {
    Ok(format!("{} {cents}", card.number))
}

fn main() {}

use dbos_macros::step;

pub struct Cart {
    pub items: Vec<String>,
}

impl Cart {
    #[step(max_attempts = 3)]
    async fn add(&mut self, item: String) -> Result<usize, dbos_core::Error> {
        self.items.push(item);
        Ok(self.items.len())
    }
}

fn main() {}

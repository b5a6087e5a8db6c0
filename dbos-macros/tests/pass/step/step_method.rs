//! Steps as methods (`&self`, `&mut self`), as associated and generic functions, and in a
//! trait implementation; and a workflow as an associated function.

use dbos_macros::{step, workflow};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ShopError(String);

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError(e.to_string())
    }
}

pub struct Shop {
    name: String,
}

impl Shop {
    /// Retried: every attempt gets the same `&self` and a fresh clone of `item`.
    #[step(max_attempts = 3, interval = "10ms")]
    pub async fn price(&self, item: String) -> Result<i64, ShopError> {
        Ok((self.name.len() + item.len()) as i64)
    }

    /// Runs once, so it may take `&mut self`.
    #[step]
    pub async fn rename(&mut self, name: String) -> Result<(), ShopError> {
        self.name = name;
        Ok(())
    }

    /// Runs once, so it may take `self` by value.
    #[step]
    pub async fn into_name(self) -> Result<String, ShopError> {
        Ok(self.name)
    }

    /// Generic: the storability of `T` is checked where the step is used.
    #[step(max_attempts = 2)]
    pub async fn echo<T: Serialize + DeserializeOwned + Clone + Send + 'static>(
        &self,
        value: T,
    ) -> Result<T, ShopError> {
        Ok(value)
    }

    /// An associated function.
    #[step]
    pub async fn double(x: u32) -> Result<u32, ShopError> {
        Ok(x * 2)
    }

    /// A workflow can be an associated function too.
    #[workflow]
    pub async fn open(name: String) -> Result<u32, ShopError> {
        Shop::double(name.len() as u32).await
    }
}

trait Pricing {
    async fn quote(&self) -> Result<i64, ShopError>;
}

impl Pricing for Shop {
    #[step(name = "shop_quote")]
    async fn quote(&self) -> Result<i64, ShopError> {
        Ok(42)
    }
}

#[test]
fn steps_as_methods_run_as_plain_calls_outside_a_workflow() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut shop = Shop {
            name: "corner".into(),
        };
        assert_eq!(shop.price("tea".into()).await.unwrap(), 9);
        shop.rename("big".into()).await.unwrap();
        assert_eq!(shop.echo(vec![1u8, 2]).await.unwrap(), vec![1, 2]);
        assert_eq!(Shop::double(4).await.unwrap(), 8);
        assert_eq!(shop.quote().await.unwrap(), 42);
        assert_eq!(shop.into_name().await.unwrap(), "big");
    });
    let _call = Shop::open("x".into());
}

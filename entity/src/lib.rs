//! sea-orm entities of the price-oracle database, as `sea-orm-cli generate entity` produces
//! them, tidied.

pub mod heartbeat;
pub mod prices;
pub mod signers;

pub mod prelude {
    pub use super::heartbeat::Entity as Heartbeat;
    pub use super::prices::Entity as Prices;
    pub use super::signers::Entity as Signers;
}

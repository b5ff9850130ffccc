//! sea-orm migrations for the price-oracle schema. The storage issue fills this crate.

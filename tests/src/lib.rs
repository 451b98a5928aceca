pub mod fixtures;
pub mod gitserver;

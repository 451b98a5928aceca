//! Sources ("forges"): the providers repovault backs up. Today: GitHub and GitHub
//! Enterprise ([`github`]).

pub mod github;

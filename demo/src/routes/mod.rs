//! The handlers, one module per area.

pub mod account;
pub mod admin;
pub mod api;
pub mod auth;
pub mod pages;
pub mod password;
pub mod two_factor;

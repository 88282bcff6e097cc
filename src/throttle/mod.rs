//! Login throttling: caps on failed logins per account, per client address and per device
//! cookie. The rules, the device cookies and the threat model are documented on
//! [`LoginThrottle`]; the store contract on [`ThrottleStore`].

mod device;
mod limits;
mod memory;
mod policy;
mod store;

pub use device::LoginAttempt;
pub use memory::MemoryThrottleStore;
pub use policy::LoginThrottle;
pub use store::{ThrottleEntry, ThrottleStore};

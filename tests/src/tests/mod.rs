//! All cross-crate tests (one test binary).

mod compare;
mod conservation;
mod ctl;
mod execute;
mod ipmi;
mod kubernetes;
mod ops;
pub mod paging;
mod protocol;
mod redfish;
mod risk;
mod snmp;
mod switch;
mod tls;
mod traffic;
mod vm;

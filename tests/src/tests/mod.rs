//! All cross-crate tests (one test binary).

mod conservation;
mod ctl;
mod ipmi;
mod ops;
mod protocol;
mod redfish;
mod risk;
mod snmp;
mod tls;
mod vm;

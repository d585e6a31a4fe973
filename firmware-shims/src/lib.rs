//! I/O-free protocol decoding and vendor quirks (codecs arrive with the real collectors, issue 3).
#![forbid(unsafe_code)]

//! End-to-end test harness (see src/tests).

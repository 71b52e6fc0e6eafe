//! Integration tests of routemesh-test-support's fixtures: the fake upstream
//! served in process and called over loopback.

mod fake_upstream;

//! Tests of scenario validation.

//! Offline tools of routemesh, behind the `routemesh-tools` binary: the
//! head trainer ([`heads`]: `train-head`, `eval-head`,
//! `make-difficulty-data`) and the PII detectors' evaluation ([`pii_eval`]:
//! `eval-pii`). Nothing here runs in a serving process; the worker only
//! loads what the trainer writes (`routemesh_classifier_worker::heads`).

#![forbid(unsafe_code)]

pub mod heads;
pub mod pii_eval;

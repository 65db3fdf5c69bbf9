//! ot-hil: the runner library.

//! The lab side of ot-hil: what boards exist, who may use them, and how firmware gets onto them.

pub mod flash;

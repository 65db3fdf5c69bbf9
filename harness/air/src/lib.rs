//! The virtual 802.15.4 air.

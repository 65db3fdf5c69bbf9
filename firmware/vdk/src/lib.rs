//! Virtual nRF52840 DK.

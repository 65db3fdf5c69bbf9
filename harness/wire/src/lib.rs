//! Wire codecs shared by the harness (to decode captures) and the virtual DK (to speak on the virtual air).

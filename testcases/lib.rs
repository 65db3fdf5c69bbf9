//! No code: this package only makes `testcases/` visible to `cargo insta review`. The cases are
//! the `*.toml` files beside it; `ot-hil run` executes them (see README.md).

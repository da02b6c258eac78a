//! Typed label sets are checked by the compiler: a field type that is not a label
//! value, a lookup with another label set, and what the derives refuse do not compile.
//! The expected errors are in `tests/ui/*.stderr` (refresh them with
//! `TRYBUILD=overwrite cargo test --all-features --test derive_compile_fail` after a
//! compiler upgrade changes their wording, and read the diff).

#[test]
fn wrong_label_types_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

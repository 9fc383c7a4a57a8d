//! `#[derive(Session)]` as users meet it: representative uses compile, and
//! each mistake fails with a message (reviewed in the `.stderr` files) that
//! says what to do.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

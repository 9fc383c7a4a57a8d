use typed_sessions::{MissingField, Session, TypedSession};

fn guest() -> String {
    "guest".to_owned()
}

#[derive(Session)]
#[session(max_age = 1800)]
struct Visit {
    last_visit: Option<f64>,
    #[session(rename = "n", default)]
    count: u64,
    #[session(default = "guest")]
    name: String,
    user_id: u64,
}

#[derive(Session)]
#[session(max_age = "1h30m")]
struct Short {
    #[session(rename = "short-key")]
    value: Vec<String>,
}

fn use_it(visit: TypedSession<Visit>, short: TypedSession<Short>) -> Result<(), MissingField> {
    let _: Option<f64> = visit.last_visit();
    visit.set_last_visit(Some(1.0));
    *visit.count_mut() += 1;
    let _: String = visit.name();
    let _: u64 = visit.user_id()?;
    *visit.user_id_mut()? += 1;
    let whole: Visit = visit.get()?;
    visit.set(&whole);
    let _: Result<Vec<String>, MissingField> = short.value();
    short.value_mut()?.push("x".to_owned());
    Ok(())
}

const _: () = {
    assert!(matches!(<Visit as typed_sessions::typed::SessionData>::MAX_AGE, Some(1800)));
    assert!(matches!(<Short as typed_sessions::typed::SessionData>::MAX_AGE, Some(5400)));
};

fn main() {
    let _ = use_it;
    assert_eq!(<Visit as typed_sessions::typed::SessionData>::KEYS, ["last_visit", "n", "name", "user_id"]);
}

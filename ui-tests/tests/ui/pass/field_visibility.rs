//! Each field's accessors are as visible as the field, so the derive takes
//! every struct Rust takes: a private field of a private type in a public
//! struct, `pub(crate)` and `pub(super)` fields, and public fields of a
//! private struct. The generated code adds no warning of its own, even for
//! private accessors never called.

#![deny(warnings)]

mod account {
    use typed_sessions::TypedSession;

    pub mod profile {
        use serde::{Deserialize, Serialize};
        use typed_sessions::{MissingField, Session, TypedSession};

        #[derive(Serialize, Deserialize)]
        struct Address {
            city: String,
        }

        #[derive(Session)]
        pub struct Profile {
            #[session(default)]
            addresses: Vec<Address>,
            pub(crate) name: Option<String>,
            pub(super) visits: u32,
            #[session(default)]
            pub theme: String,
            /// No accessor of this field is called.
            #[session(default)]
            secret: u64,
        }

        /// The struct's own module reaches every accessor, private ones
        /// included.
        pub fn move_to(profile: &TypedSession<Profile>, city: &str) -> Result<(), MissingField> {
            let _: Vec<Address> = profile.addresses();
            profile.set_addresses(Vec::new());
            profile.addresses_mut().push(Address {
                city: city.to_owned(),
            });
            let _: Option<String> = profile.name();
            let _: u32 = profile.visits()?;
            let _: String = profile.theme();
            Ok(())
        }
    }

    /// `pub(super)` of `profile` is this module.
    pub fn count(
        profile: &TypedSession<profile::Profile>,
    ) -> Result<(), typed_sessions::MissingField> {
        *profile.visits_mut()? += 1;
        profile.set_visits(0);
        Ok(())
    }
}

use typed_sessions::typed::FieldMut;
use typed_sessions::{Session, TypedSession};

/// `pub(crate)` and `pub` reach the crate root.
fn personalize(profile: &TypedSession<account::profile::Profile>) {
    profile.set_name(Some("ann".to_owned()));
    profile.name_mut().take();
    profile.set_theme("dark".to_owned());
    let _: FieldMut<'_, account::profile::Profile, String> = profile.theme_mut();
}

/// A private struct's fields may be more visible than the struct.
#[derive(Session)]
struct Cart {
    #[session(default)]
    pub items: Vec<u32>,
    pub(crate) coupon: Option<String>,
}

fn fill(cart: &TypedSession<Cart>) {
    cart.items_mut().push(1);
    cart.set_coupon(None);
}

fn main() {
    let _ = (personalize, account::count, account::profile::move_to, fill);
}

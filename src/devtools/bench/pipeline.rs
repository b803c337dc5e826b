//! A user pipeline end to end beside the built-in one: the Random User
//! users written as a transform (`examples/randomuser.vrl`) into a typed
//! table of the same 12 columns, against the built-in flattening into the
//! seed table, both through `tributary run` on the embedded log and store.

use std::time::Duration;

use anyhow::Context;

use super::{Measure, ROUNDS, end_to_end_with, measure, rate, tempdir};

/// The `users` pipeline of `examples/pipelines.toml`, as a file a child
/// process can read (`{transform_file}` is filled in).
const CONFIG: &str = r#"
[[pipelines]]
name = "users"
source = { url = "gen:" }
transform_file = {transform_file}
table = { key = ["id"], columns = { id = "uuid", first_name = "text", last_name = "text", gender = "text", address = "text", post_code = "text", email = "text", username = "text", dob = "text", registered_date = "text", phone = "text", picture = "text" } }
"#;

/// The ratio of the generic pipeline's rate to the built-in's, best of
/// [`ROUNDS`] each, and the generic run's peak RSS.
pub(super) async fn generic_vs_built_in(
    n: u64,
    built_in: Duration,
) -> anyhow::Result<(Measure, Option<u64>)> {
    let dir = tempdir()?;
    let program = dir.join("randomuser.vrl");
    std::fs::write(&program, include_str!("../../../examples/randomuser.vrl"))
        .context("cannot write the bench transform")?;
    let path = toml::Value::String(program.to_string_lossy().into_owned()).to_string();
    let config = dir.join("pipelines.toml");
    std::fs::write(&config, CONFIG.replace("{transform_file}", &path))
        .context("cannot write the bench config")?;
    let config = config.to_string_lossy().into_owned();
    let mut generic = Duration::MAX;
    let mut rss = None;
    for _ in 0..ROUNDS {
        let (d, r) = end_to_end_with(n, &["--config", &config, "--pipeline", "users"]).await?;
        generic = generic.min(d);
        rss = rss.max(r);
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok((
        measure(
            "user pipeline (VRL, typed)",
            rate(n, generic),
            "built-in Random User run",
            rate(n, built_in),
        ),
        rss,
    ))
}

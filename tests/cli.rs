//! The operator's commands that need no running factory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn image_factory(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(args)
        .output()
        .expect("run image-factory");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn schedule_prints_the_next_firings_of_the_second_tuesday_schedule() {
    let (ok, stdout, stderr) = image_factory(&[
        "schedule",
        "0 0 18 8-14 * Tue",
        "--next",
        "5",
        "--after",
        "2026-11-25T00:00:00",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "2026-12-08 18:00:00 Tue UTC\n\
         2027-01-12 18:00:00 Tue UTC\n\
         2027-02-09 18:00:00 Tue UTC\n\
         2027-03-09 18:00:00 Tue UTC\n\
         2027-04-13 18:00:00 Tue UTC\n"
    );
}

#[test]
fn schedule_explains_what_is_wrong_with_a_bad_expression() {
    let (ok, stdout, stderr) = image_factory(&["schedule", "0 0 25 * * *"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("hour") && stderr.contains("25"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_the_port_the_functions_host_gives() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .arg("serve")
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
}

#[test]
fn serve_refuses_to_start_without_an_approval_signing_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
        .env_remove("IMAGE_FACTORY_APPROVAL_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMAGE_FACTORY_APPROVAL_KEYS"));
}

#[test]
fn patch_tuesday_prints_the_second_tuesdays_and_the_configured_build_times() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_TUESDAY_ZONE", "Europe/Paris")
        .env("IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS", "7")
        .env("IMAGE_FACTORY_PATCH_TUESDAY_HOUR", "18")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(
        lines[1],
        "2027-01-12     2027-01-19 18:00 CET  (2027-01-19 17:00 UTC)"
    );
    assert_eq!(
        lines[7],
        "2027-07-13     2027-07-20 18:00 CEST  (2027-07-20 16:00 UTC)"
    );
    assert_eq!(
        lines[12],
        "2027-12-14     2027-12-21 18:00 CET  (2027-12-21 17:00 UTC)"
    );
}

#[test]
fn patch_tuesday_refuses_a_time_zone_that_does_not_exist() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_TUESDAY_ZONE", "Mars/Olympus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Mars/Olympus"));
}

#[test]
fn a_patch_grace_period_beyond_the_next_build_is_refused_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_GRACE_DAYS", "40")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IMAGE_FACTORY_PATCH_GRACE_DAYS") && stderr.contains("0-27 days"),
        "{stderr}"
    );
}

#[test]
fn up_refuses_a_parallelism_of_zero_or_garbage_before_it_starts_anything() {
    let data = tempfile::TempDir::new().unwrap();
    let up = |env: Option<&str>, flag: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_image-factory"));
        command
            .args(["up", "--port", "0"])
            .env("IMAGE_FACTORY_DATA", data.path().join("data"));
        if let Some(value) = env {
            command.env("IMAGE_FACTORY_PARALLELISM", value);
        }
        if let Some(value) = flag {
            command.arg(format!("--parallelism={value}"));
        }
        let out = command.output().expect("run image-factory");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for value in ["0", "many", "-2", "99999999999", " 7"] {
        let stderr = up(Some(value), None);
        assert!(
            stderr.contains("IMAGE_FACTORY_PARALLELISM") && stderr.contains("at least 1"),
            "{value}: {stderr}"
        );
        let stderr = up(None, Some(value));
        assert!(stderr.contains("--parallelism"), "{value}: {stderr}");
    }
    assert!(
        !data.path().join("data").exists(),
        "a refused setting changed nothing"
    );
}

#[test]
fn rollback_asks_the_factory_and_direct_warns_and_refuses_what_the_store_never_released() {
    let data = tempfile::TempDir::new().unwrap();
    let rollback = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_image-factory"))
            .arg("rollback")
            .args(args)
            .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
            .env_remove("IMAGE_FACTORY_URL")
            .env("IMAGE_FACTORY_DATA", data.path())
            .output()
            .expect("run image-factory")
    };
    // A reason is required: it is recorded with the rollback.
    let out = rollback(&["--image", "example", "--to", "2026.901.0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));

    // Without --direct it asks the factory; none answers at this address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = rollback(&[
        "--image",
        "example",
        "--to",
        "2026.901.0",
        "--reason",
        "bad",
        "--url",
        &url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot reach {url}")), "{stderr}");

    // --direct warns, and refuses a version no run of this store released.
    let out = rollback(&[
        "--direct",
        "--image",
        "example",
        "--to",
        "2026.901.0",
        "--reason",
        "bad",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("warning: --direct")
            && stderr.contains("example 2026.901.0 is not a version this factory released"),
        "{stderr}"
    );
    assert!(
        !data.path().join("releases").join("example").exists(),
        "a refused rollback writes nothing"
    );
    let out = rollback(&[
        "--direct",
        "--image",
        "../etc",
        "--to",
        "2026.901.0",
        "--reason",
        "bad",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an image name"));
}

/// Runs `up` on the images `setup` writes under `<root>/images`; answers
/// its error output once it refused to start (a factory that accepted the
/// images would run until stopped).
fn up_refusal(setup: impl FnOnce(&Path)) -> String {
    up_refusal_with(setup, &[]).0
}

/// [`up_refusal`] with the settings `env` set as well; also answers
/// whether the data folder was written.
fn up_refusal_with(setup: impl FnOnce(&Path), env: &[(&str, &str)]) -> (String, bool) {
    let root = tempfile::TempDir::new().unwrap();
    setup(&root.path().join("images"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_image-factory"));
    command
        .args(["up", "--port", "0"])
        .env("IMAGE_FACTORY_IMAGES", root.path().join("images"))
        .env("IMAGE_FACTORY_DATA", root.path().join("data"));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("up started with images it should refuse");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        root.path().join("data").exists(),
    )
}

/// The example image's settings.
fn example_settings() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/example/image.toml"),
    )
    .unwrap()
}

#[test]
fn up_refuses_an_image_whose_build_timeout_is_zero_naming_the_file_and_the_key() {
    let settings = example_settings();
    assert!(settings.contains("timeout_minutes = 10"), "{settings}");
    let mut file = PathBuf::new();
    let stderr = up_refusal(|images| {
        let folder = images.join("zero");
        std::fs::create_dir_all(&folder).unwrap();
        file = folder.join("image.toml");
        std::fs::write(
            &file,
            settings.replace("timeout_minutes = 10", "timeout_minutes = 0"),
        )
        .unwrap();
    });
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("[packer] timeout_minutes"),
        "{stderr}"
    );
}

#[test]
fn up_refuses_images_built_on_each_other_or_on_an_unknown_image_naming_them() {
    let layered = |images: &Path, pairs: &[(&str, &str)]| {
        for (name, parent) in pairs {
            let folder = images.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(
                folder.join("image.toml"),
                format!(
                    "{}\n[base_image]\nfactory = \"{parent}\"\n",
                    example_settings()
                ),
            )
            .unwrap();
        }
    };
    let stderr = up_refusal(|images| layered(images, &[("iis", "hardened"), ("hardened", "iis")]));
    assert!(stderr.contains("are built on each other"), "{stderr}");
    assert!(stderr.contains("hardened → iis → hardened"), "{stderr}");
    let stderr = up_refusal(|images| layered(images, &[("iis", "nowhere")]));
    assert!(
        stderr.contains("image iis is built on nowhere, which is not an image of the factory"),
        "{stderr}"
    );
}

#[test]
fn schedule_says_so_and_fails_when_a_schedule_never_fires() {
    let (ok, stdout, stderr) = image_factory(&["schedule", "0 0 0 30 Feb *"]);
    assert!(!ok, "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("never fires"), "{stderr}");
}

#[test]
fn patch_tuesday_refuses_a_year_outside_the_calendar_it_knows() {
    for year in ["262143", "-5", "1969", "10000"] {
        let (ok, stdout, stderr) = image_factory(&["patch-tuesday", &format!("--year={year}")]);
        assert!(!ok, "{year}: {stdout}");
        assert!(
            stderr.contains("1970..=9999") && !stderr.contains("no such month"),
            "{year}: {stderr}"
        );
    }
}

/// Writes the example image's settings, changed by `edit`, as image `name`
/// under `images`; answers the file.
fn image_with(images: &Path, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let folder = images.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("image.toml");
    std::fs::write(&file, edit(example_settings())).unwrap();
    file
}

#[test]
fn up_refuses_a_duration_or_count_outside_its_documented_range_naming_the_file_and_key() {
    fn smoke_http(timeout: &'static str) -> impl Fn(String) -> String {
        move |settings: String| {
            settings.replace(
                "[smoke.command]\nargv = [\"sh\", \"scripts/smoke-test.sh\"]\ntimeout_seconds = 30",
                &format!(
                    "[smoke.http]\nurl = \"http://127.0.0.1:9/\"\ntimeout_seconds = {timeout}"
                ),
            )
        }
    }
    /// The example's settings changed one way.
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "[approval] expires_hours",
            Box::new(|s: String| s.replace("expires_hours = 72", "expires_hours = 4294967295")),
        ),
        (
            "[smoke.http] timeout_seconds",
            Box::new(smoke_http("18446744073709551615")),
        ),
        ("[smoke.http] timeout_seconds", Box::new(smoke_http("0"))),
        (
            "[smoke.command] timeout_seconds",
            Box::new(|s: String| s.replace("timeout_seconds = 30", "timeout_seconds = 0")),
        ),
        (
            "[smoke.command] timeout_seconds",
            Box::new(|s: String| s.replace("timeout_seconds = 30", "timeout_seconds = 86401")),
        ),
        (
            "[packer] timeout_minutes",
            Box::new(|s: String| {
                s.replace(
                    "timeout_minutes = 10",
                    "timeout_minutes = 9223372036854775807",
                )
            }),
        ),
        (
            "[approval] remind_before_hours",
            Box::new(|s: String| format!("{s}remind_before_hours = 4294967295\n")),
        ),
        (
            "[release] keep_days",
            Box::new(|s: String| format!("{s}\n[release]\nkeep_days = 4294967295\n")),
        ),
        (
            "[release] keep_last",
            Box::new(|s: String| format!("{s}\n[release]\nkeep_last = 4294967295\n")),
        ),
    ];
    for (key, edit) in cases {
        let mut file = PathBuf::new();
        let stderr = up_refusal(|images| file = image_with(images, "ranged", edit));
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(key),
            "{key}: {stderr}"
        );
        assert!(
            stderr.contains(" from ") && stderr.contains(" to "),
            "{key}: the refusal gives the range: {stderr}"
        );
    }
}

#[test]
fn up_refuses_an_image_folder_whose_name_git_could_not_tag_naming_the_rule() {
    for name in ["-x", ".x", "x.lock"] {
        let stderr = up_refusal(|images| {
            image_with(images, name, |s| s);
        });
        assert!(
            stderr.contains(name) && stderr.contains("must start with a letter or digit"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn up_refuses_a_setting_that_is_empty_malformed_or_out_of_range_naming_it() {
    let example = |images: &Path| {
        image_with(images, "example", |s| s);
    };
    let cases = [
        ("IMAGE_FACTORY_PATCH_GRACE_DAYS", "", "is set but empty"),
        (
            "IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS",
            "",
            "is set but empty",
        ),
        ("IMAGE_FACTORY_PATCH_TUESDAY_HOUR", "", "is set but empty"),
        ("IMAGE_FACTORY_PARALLELISM", "", "is set but empty"),
        ("IMAGE_FACTORY_PARALLELISM", "99999999999", "at most 256"),
        ("IMAGE_FACTORY_PARALLELISM", " 7", "a whole number"),
        (
            "IMAGE_FACTORY_PUBLIC_URL",
            "javascript:alert(1)",
            "absolute http(s) URL",
        ),
        (
            "IMAGE_FACTORY_PUBLIC_URL",
            "not a url",
            "absolute http(s) URL",
        ),
        ("IMAGE_FACTORY_PUBLIC_URL", "", "is set but empty"),
        ("IMAGE_FACTORY_OPERATOR_TOKEN", "a", "at least 32 bytes"),
    ];
    for (name, value, why) in cases {
        let (stderr, written) = up_refusal_with(example, &[(name, value)]);
        assert!(
            stderr.contains(&format!("setting {name} is not valid")) && stderr.contains(why),
            "{name}={value:?}: {stderr}"
        );
        assert!(!written, "{name}={value:?}: a refused start wrote nothing");
    }
    // A short token is refused without being echoed.
    let (stderr, _) = up_refusal_with(example, &[("IMAGE_FACTORY_OPERATOR_TOKEN", "sesame-17")]);
    assert!(!stderr.contains("sesame-17"), "{stderr}");
}

/// What `image-factory up` logs until it says it is up, its stderr going to
/// a pipe, or with `terminal` to a pseudo-terminal (util-linux `script`),
/// with `NO_COLOR` as given. The factory is stopped once it is up (`script`
/// stops what it runs when it is told to end).
fn up_log(terminal: bool, no_color: Option<&str>) -> String {
    use std::io::Read;
    let root = tempfile::TempDir::new().unwrap();
    image_with(&root.path().join("images"), "example", |s| s);
    let binary = env!("CARGO_BIN_EXE_image-factory");
    let mut command = if terminal {
        let mut script = Command::new("script");
        script.args([
            "-q",
            "-e",
            "-c",
            &format!("'{binary}' up --port 0"),
            "/dev/null",
        ]);
        script
    } else {
        let mut up = Command::new(binary);
        up.args(["up", "--port", "0"]);
        up
    };
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("IMAGE_FACTORY_IMAGES", root.path().join("images"))
        .env("IMAGE_FACTORY_DATA", root.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    // On a terminal the log arrives on script's stdout; else on up's stderr.
    let (out, err) = if terminal {
        (std::process::Stdio::piped(), std::process::Stdio::null())
    } else {
        (std::process::Stdio::null(), std::process::Stdio::piped())
    };
    let mut child = command.stdout(out).stderr(err).spawn().unwrap();
    let mut stream: Box<dyn Read> = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), _) => Box::new(out),
        (None, Some(err)) => Box::new(err),
        (None, None) => unreachable!("one of them is piped"),
    };
    let mut log = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&log).contains("image-factory is up") {
        let read = stream.read(&mut buffer).unwrap_or(0);
        if read == 0 {
            break;
        }
        log.extend_from_slice(&buffer[..read]);
    }
    // SIGTERM: `up` shuts down, and `script` ends what it runs first (a
    // process that already ended is simply waited for).
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(
        log.contains("image-factory is up"),
        "up never said it was up: {log}"
    );
    log
}

#[test]
fn up_logs_plain_text_when_redirected_and_colour_only_on_a_terminal_without_no_color() {
    let redirected = up_log(false, None);
    assert!(!redirected.contains('\u{1b}'), "{redirected:?}");
    let terminal = up_log(true, None);
    assert!(
        terminal.contains("\u{1b}["),
        "a terminal gets colour: {terminal:?}"
    );
    let no_color = up_log(true, Some("1"));
    assert!(!no_color.contains('\u{1b}'), "NO_COLOR=1: {no_color:?}");
}

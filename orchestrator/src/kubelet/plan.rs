//! What the kubelet runs for one container: its argv, environment and working directory, worked
//! out from the Pod before anything is started — or the reason it cannot start (ferry pulls no
//! images, so a container without a `command` runs only when its image is `ferry/echo`).
//! Pure: the host is touched only when a [`Plan`] is turned into a process.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;

use k8s_openapi::api::core::v1::Container;

use super::env::{self, Env, EnvSource};

/// The image that needs no command: ferry's built-in echo app.
const ECHO_IMAGE: &str = "ferry/echo";
/// The echo app's port when the container declares none.
const ECHO_DEFAULT_PORT: u16 = 8080;

/// A container ready to be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Program and arguments.
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Env,
    pub(crate) working_dir: Option<String>,
    /// The argv prefix that enters the Pod's network namespace (`ip netns exec NAME`), empty
    /// when the Pod shares the host's network. Exec probes run behind it too.
    pub(crate) enter: Vec<OsString>,
}

/// Why a container does not start: its status is `waiting {reason, message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// Works out how to run `container`. `echo_ip` is where `ferry/echo` listens: the Pod's IP, or
/// every address (`0.0.0.0`) in a network namespace of the Pod's own, as an app in a container
/// does, so its Pod's other containers reach it on localhost.
pub(crate) fn plan(
    source: &EnvSource<'_>,
    container: &Container,
    echo_program: &Path,
    echo_ip: IpAddr,
) -> Result<Plan, Waiting> {
    let image = container.image.as_deref().unwrap_or("");
    let command = container.command.as_deref().unwrap_or(&[]);
    let args = container.args.as_deref().unwrap_or(&[]);
    let echo = command.is_empty() && is_echo_image(image);
    if command.is_empty() && !echo {
        return Err(Waiting {
            reason: "ErrImageNeverPull",
            message: format!(
                "ferry runs no images: image {image:?} needs a command (only {ECHO_IMAGE} runs without one)"
            ),
        });
    }
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(Waiting {
            reason: "CreateContainerConfigError",
            message: "envFrom is not supported by ferry's local runtime".to_owned(),
        });
    }
    let env =
        env::container_env(source, container.env.as_deref().unwrap_or(&[])).map_err(|message| {
            Waiting {
                reason: "CreateContainerConfigError",
                message,
            }
        })?;
    let argv = if echo {
        if args.is_empty() {
            echo_argv(
                echo_program,
                echo_ip,
                first_port(container),
                &container.name,
                std::process::id(),
            )
        } else {
            // As in Kubernetes, args without a command replace the image's default arguments
            // and keep its entrypoint, which for ferry/echo is `ferry echo`.
            [echo_program.as_os_str().to_owned(), "echo".into()]
                .into_iter()
                .chain(args.iter().map(|a| env.expand(a).into()))
                .collect()
        }
    } else {
        command
            .iter()
            .chain(args)
            .map(|a| env.expand(a).into())
            .collect()
    };
    Ok(Plan {
        argv,
        env,
        working_dir: container.working_dir.clone().filter(|d| !d.is_empty()),
        enter: Vec::new(),
    })
}

/// `ferry/echo`, with any tag or digest.
pub(crate) fn is_echo_image(image: &str) -> bool {
    image
        .strip_prefix(ECHO_IMAGE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('@'))
}

/// The argv of the built-in echo app serving `ip:port` under the container's name.
pub fn echo_argv(
    echo_program: &Path,
    ip: IpAddr,
    port: u16,
    name: &str,
    parent: u32,
) -> Vec<OsString> {
    vec![
        echo_program.as_os_str().to_owned(),
        "echo".into(),
        "--listen".into(),
        SocketAddr::new(ip, port).to_string().into(),
        "--name".into(),
        name.into(),
        // A ferry killed outright must not leave its Pods running, holding their addresses.
        "--parent-pid".into(),
        parent.to_string().into(),
    ]
}

fn first_port(container: &Container) -> u16 {
    container
        .ports
        .as_deref()
        .and_then(|ports| ports.first())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .filter(|&p| p != 0)
        .unwrap_or(ECHO_DEFAULT_PORT)
}

impl Plan {
    /// A command for `argv` in this container's environment and working directory: the
    /// container's own process, or an exec probe. The parent's environment is not inherited.
    pub(crate) fn command(&self, argv: &[OsString]) -> Option<tokio::process::Command> {
        let (program, args) = argv.split_first()?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        Some(command)
    }
}

#[cfg(test)]
mod tests;

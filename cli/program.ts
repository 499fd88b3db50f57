/**
 * `berth`'s commands (cli/main.ts loads this for every command but the flow-run container's). Each command's
 * module is imported only when that command runs, so `berth execute flow-file` loads no server, Docker or
 * bundler code.
 */
import { Command, CommanderError, Option } from "commander";
import { describeError, isBerthError } from "../wire/errors.js";
import { EXIT, type ExitCode } from "./exit.js";
import { collect } from "./format.js";
import { VERSION } from "./version.js";

const program = new Command("berth")
  .description("Run TypeScript flows in Docker: storage images, an HTTP server and label-matched agents.")
  .version(VERSION)
  .showHelpAfterError("(run with --help for usage)")
  .option("--config <file>", "config file (default ./berth.config.json when present, or BERTH_CONFIG)")
  .option("--log-level <level>", "debug | info | warn | error");

const apiOption = () => new Option("--api <url>", "the berth server (default http://127.0.0.1:4200, or BERTH_API_URL)");

program
  .command("server")
  .description("run the API server (embedded SQLite by default)")
  .option("--host <host>", "interface to listen on (default 127.0.0.1)")
  .option("--port <port>", "port to listen on (default 4200)")
  .option("--db <path|url>", "SQLite file (default ~/.berth/berth.db)")
  .option("--insecure", "serve without tokens: whoever reaches the server is an admin (never on a shared network)")
  .action(async (opts) => (await import("./commands/server.js")).serverCommand(program.opts(), opts));

program
  .command("agent")
  .description("run a Docker agent that claims flow runs matching its labels")
  .addOption(apiOption())
  .option("--label <label>", "an agent label (repeatable)", collect)
  .option("--name <name>", "agent name (default agent-<hostname>)")
  .option("--concurrency <n>", "flow runs at once (default 1)")
  .option("--network <net>", "Docker network for flow-run containers (default host when the API is on loopback)")
  .addOption(new Option("--backend <backend>", "docker: a container per run on this engine (default); swarm: a service of one task per run on the swarm this engine manages").choices(["docker", "swarm"]))
  .addOption(new Option("--pull-policy <policy>", "image pull policy (default if-not-present; never: build, never pull)").choices(["always", "if-not-present", "never"]))
  .option("--build-on-pull-failure", "when a pull fails, build the image here from the registered context (the default)")
  .option("--no-build-on-pull-failure", "when a pull fails, fail the run")
  .option("--env <K=V>", "environment variable for flow-run containers (repeatable)", collect)
  .option("--container-api <url>", "the API URL as containers reach it (default: --api)")
  .option("--keep-containers", "leave finished containers for inspection")
  .option("--memory <size>", "memory limit of each flow-run container, like 512m or 2g (default none)")
  .option("--cpus <n>", "CPU limit of each flow-run container, like 1.5 (default none)")
  .option("--pids-limit <n>", "most processes in each flow-run container (default 1024)")
  .option("--allow-image <pattern>", "run only images matching this glob, like registry.example/team/** (repeatable; default any)", collect)
  .option("--allow-root", 'run flows that ask for it (runAs: "root") as root; without it they fail')
  .option("--allow-local-dir <path>", "a host directory under which LocalStorage flows may be mounted, besides <home>/flows (repeatable)", collect)
  .option("--http <host:port>", "serve the agent's /health and /metrics on this address, like 127.0.0.1:9464 (default none)")
  .option("--warm-pool <n>", "keep up to N started, idle containers per recently used image, each waiting for one run (default 0: none)")
  .action(async (opts) => (await import("./commands/agent.js")).agentCommand(program.opts(), opts));

program
  .command("register")
  .description("bundle a flow file, upload its build context, build and push its storage image (with healthcheck) when Docker is here, and register it")
  .argument("<file>", "a TypeScript or JavaScript file exporting a Flow")
  .addOption(apiOption())
  .option("--label <label>", "an extra flow label (repeatable)", collect)
  .option("--no-push", "do not push the image, even when the storage names a registry")
  .option("--no-build", "do not build the image here (no Docker engine needed): agents build it from the uploaded context")
  .action(async (file, opts) => (await import("./commands/register.js")).registerCommand(program.opts(), file, opts));

program
  .command("run")
  .description("create a flow run of a registered flow (by name or id)")
  .argument("<flow>", "flow name or id")
  .addOption(apiOption())
  .option("--param <k=v>", "a parameter; JSON values are parsed (repeatable)", collect)
  .option("--label <label>", "run labels, replacing the flow's (repeatable)", collect)
  .option("--flow-version <n>", "a specific flow version (default newest)")
  .option("--idempotency-key <key>", "create at most one run for this key")
  .option("--at <time>", "start no earlier than this ISO-8601 time (e.g. 2026-12-24T18:00:00Z)")
  .option("--in <duration>", "start no earlier than this long from now (e.g. 10m)")
  .option("--watch", "stream states and logs; exit 0 on Success, 1 when the run ends Failed or Cancelled")
  .action(async (flow, opts) => exitWith((await import("./commands/run.js")).runCommand(program.opts(), flow, opts)));

program
  .command("flows")
  .description("list registered flows")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/inspect.js")).flowsCommand(program.opts(), opts));

program
  .command("runs")
  .description("list flow runs, newest first")
  .addOption(apiOption())
  .option("--flow <name>", "only runs of this flow")
  .option("--state <state>", "only runs in this state")
  .option("--limit <n>", "at most this many (default 50)")
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/inspect.js")).runsCommand(program.opts(), opts));

program
  .command("agents")
  .description("list agents")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/inspect.js")).agentsCommand(program.opts(), opts));

program
  .command("logs")
  .description("print a flow run's logs")
  .argument("<run>", "flow run id")
  .addOption(apiOption())
  .option("--follow", "keep printing until the run ends")
  .action(async (run, opts) => (await import("./commands/inspect.js")).logsCommand(program.opts(), run, opts));

program
  .command("cancel")
  .description("cancel a flow run")
  .argument("<run>", "flow run id")
  .addOption(apiOption())
  .action(async (run, opts) => (await import("./commands/inspect.js")).cancelCommand(program.opts(), run, opts));

const schedule = program.command("schedule").description("the schedules of flows: see, pause, resume");
schedule
  .command("ls", { isDefault: true })
  .description("every schedule: its clocks, next runs and newest slots")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/orchestration.js")).scheduleListCommand(program.opts(), opts));
schedule
  .command("show")
  .description("one flow's schedule, with the slots it handled (created, missed, paused)")
  .argument("<flow>", "flow name")
  .addOption(apiOption())
  .option("--ticks <n>", "how many of the newest slots to show (default 20, at most 1000)")
  .option("--json", "print JSON")
  .action(async (flow, opts) => (await import("./commands/orchestration.js")).scheduleShowCommand(program.opts(), flow, opts));
for (const action of ["pause", "resume"] as const) {
  schedule
    .command(action)
    .description(action === "pause" ? "pause a flow's schedule at once (its runs made ahead are dropped)" : "resume a flow's schedule from now on")
    .argument("<flow>", "flow name")
    .addOption(apiOption())
    .action(async (flow, opts) => (await import("./commands/orchestration.js")).schedulePauseCommand(program.opts(), flow, action === "pause", opts));
}

const concurrency = program.command("concurrency").description("limits on how many runs carrying a label run at once, across every agent");
concurrency
  .command("ls", { isDefault: true })
  .description("every limit, with the runs holding its slots")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/orchestration.js")).concurrencyListCommand(program.opts(), opts));
concurrency
  .command("set")
  .description("at most N runs carrying LABEL Submitted, Running or Cancelling at once, across every agent")
  .argument("<label>", "run label")
  .argument("<n>", "the most runs at once, a positive whole number")
  .addOption(apiOption())
  .action(async (label, n, opts) => (await import("./commands/orchestration.js")).concurrencySetCommand(program.opts(), label, n, opts));
concurrency
  .command("rm")
  .description("remove a label's limit")
  .argument("<label>", "run label")
  .addOption(apiOption())
  .action(async (label, opts) => (await import("./commands/orchestration.js")).concurrencyRemoveCommand(program.opts(), label, opts));

const token = program.command("token").description("tokens: admin (everything) or agent (one agent's own calls and runs)");
token
  .command("create")
  .description("create a token and print it once (the server keeps only its hash)")
  .requiredOption("--role <role>", "admin or agent")
  .option("--name <name>", "an agent token's agent (required for --role agent); a label for an admin token")
  .option("--label <label>", "an agent token's agent may register only with these labels (repeatable; default any)", collect)
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/trust.js")).tokenCreateCommand(program.opts(), opts));
token
  .command("ls", { isDefault: true })
  .description("every token, without its secret")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/trust.js")).tokenListCommand(program.opts(), opts));
token
  .command("revoke")
  .description("revoke a token: refused from the next request on")
  .argument("<id>", "the token's id (berth token ls)")
  .addOption(apiOption())
  .action(async (id, opts) => (await import("./commands/trust.js")).tokenRevokeCommand(program.opts(), id, opts));

const secret = program.command("secret").description("secrets flows read with Secret(\"NAME\"), encrypted at rest");
secret
  .command("set")
  .description("set a secret; its value is read from stdin")
  .argument("<name>", "letters, digits, _ . -")
  .addOption(apiOption())
  .action(async (name, opts) => (await import("./commands/trust.js")).secretSetCommand(program.opts(), name, opts));
secret
  .command("ls", { isDefault: true })
  .description("secrets' names, never their values")
  .addOption(apiOption())
  .option("--json", "print JSON")
  .action(async (opts) => (await import("./commands/trust.js")).secretListCommand(program.opts(), opts));
secret
  .command("rm")
  .description("remove a secret")
  .argument("<name>", "the secret's name")
  .addOption(apiOption())
  .action(async (name, opts) => (await import("./commands/trust.js")).secretRemoveCommand(program.opts(), name, opts));

const execute = program.command("execute").description("run flows inside a container (entry points)");
execute
  .command("flow-run")
  .description("the flow-run container's entry point (reads BERTH_API_URL, BERTH_API_TOKEN, BERTH_FLOW_RUN_ID)")
  // cli/main.ts runs it without this parser; listed here for --help (and for `berth execute flow-run --help`).
  .action(async () => (await import("../flow-run/main.js")).main());
execute
  .command("flow-file")
  .description("run a flow module in this process with no server (for debugging an image)")
  .argument("<location>", "path of a bundled flow module, e.g. /opt/berth/flows/my-flow.mjs")
  .option("--param <k=v>", "a parameter (repeatable)", collect)
  .action(async (location, opts) => (await import("./commands/execute.js")).executeFlowFileCommand(location, opts));

program
  .command("healthcheck")
  .description("check that flows load in this image (run during storage builds)")
  .argument("<locations...>", "flow module paths")
  .action(async (locations) => (await import("./commands/execute.js")).healthcheckCommand(locations));

program
  .command("up")
  .description("quickstart: the server (SQLite) and one agent in one process, on the local Docker engine")
  .option("--host <host>", "interface to listen on (default 127.0.0.1)")
  .option("--port <port>", "port to listen on (default 4200)")
  .option("--db <path>", "SQLite file (default ~/.berth/berth.db)")
  .option("--label <label>", "an agent label (repeatable)", collect)
  .option("--concurrency <n>", "flow runs at once (default 2)")
  .action(async (opts) => (await import("./commands/up.js")).upCommand(program.opts(), opts));

const image = program.command("image").description("build the images berth needs, offline when no registry is reachable");
image
  .command("build")
  .description("build the berth image (server, agent and flow-run process)")
  .option("--base <image>", "base image with Node.js (default node:20-bookworm-slim when present, else one made from this host's Node.js)")
  .action(async (opts) => (await import("./commands/image.js")).imageBuildCommand(opts));
image
  .command("base")
  .description("the Node.js base image (BASE_IMAGE): node:20-bookworm-slim when present, else one imported from this host's Node.js")
  .action(async () => (await import("./commands/image.js")).imageBaseCommand());
image
  .command("build-base")
  .description("the Node.js build image, with a compiler (BUILD_IMAGE): node:20-bookworm when present, else one made with debootstrap, as root")
  .option("--mirror <url>", "Debian mirror for debootstrap (default http://deb.debian.org/debian)")
  .action(async (opts) => (await import("./commands/image.js")).imageBuildBaseCommand(opts));
image
  .command("registry")
  .description("build a registry image from Debian's docker-registry, for docker compose without Docker Hub")
  .action(async () => (await import("./commands/image.js")).imageRegistryCommand());

program.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and --version end with 0; a usage mistake is an error like any other.
    process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.error);
  }
  const interrupted = isBerthError(err, "BERTH_E_ABORTED") || (err as { name?: unknown } | null)?.name === "AbortError";
  process.stderr.write(isBerthError(err) || !interrupted ? `${formatFailure(err)}\n` : "berth: interrupted\n");
  process.exit(interrupted ? EXIT.interrupted : EXIT.error);
}

/** Sets the process's exit status from a command that returns one (run --watch: whether the run succeeded). */
async function exitWith(code: Promise<ExitCode | void>): Promise<void> {
  const status = await code;
  if (status !== undefined) process.exitCode = status;
}

function formatFailure(err: unknown): string {
  if (isBerthError(err)) return `berth: ${err.message}`;
  const detail = process.env.BERTH_DEBUG ? `\n${(err as Error)?.stack ?? ""}` : " (set BERTH_DEBUG=1 for a stack trace)";
  return `berth: unexpected error: ${describeError(err)}${detail}`;
}

import { BerthError, isBerthError } from "../../wire/errors.js";
import { FlowRun, FlowRunHeartbeat, FlowRunHeartbeatReply, PhasesReport, StateChange, type FlowRunStateName } from "../../wire/schema.js";
import { isStaleEpoch, staleLease } from "../../store/fencing.js";
import type { ServerContext } from "../context.js";
import { assertTransition, isFinalState } from "../states.js";
import { writeState } from "../write-state.js";
import { IdParams, flowRunNotFound, recordLogs, recordTaskRuns, requireFlowRun, redactionScope, withErrors, type ZodApp } from "./shared.js";

const CANCEL_ATTEMPTS = 10;

export function registerFlowRunStateRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/flow-runs/:id/state",
    {
      config: { access: "run-write" },
      schema: {
        summary: "Change a flow run's state (compare-and-swap on version, fenced by epoch when given), with the attempt's unreported task states and log lines",
        tags: ["flow runs"],
        params: IdParams,
        body: StateChange.strict(),
        response: withErrors({ 200: FlowRun }),
      },
    },
    async (request) => {
      const { id } = request.params;
      const { state, expectedVersion, epoch, taskRuns = [], logs = [] } = request.body;
      const reported = taskRuns.length > 0 || logs.length > 0;
      const scope = request.body.message !== undefined || reported ? await redactionScope(ctx, request, id) : undefined;
      const message = request.body.message === undefined ? undefined : await ctx.secrets.redact(request.body.message, scope);
      const run = await requireFlowRun(ctx.store, id);
      // A superseded attempt learns that first: it must stop, whereas a stale version only means re-read.
      if (epoch !== undefined && isStaleEpoch(epoch, run.epoch)) throw staleLease(id, run.epoch, epoch);
      // A stale writer learns that next: its idea of the current state is what is out of date.
      if (run.version !== expectedVersion) throw staleVersion(id, expectedVersion, run.version);
      assertTransition(id, run.state, state);
      if (reported) {
        // Before the state: once a run is final, its followers stop reading. A retry of this request records
        // them again harmlessly (task states replace by slug, numbered lines are stored once).
        await Promise.all([taskRuns.length > 0 && recordTaskRuns(ctx, id, taskRuns, epoch, scope), logs.length > 0 && recordLogs(ctx, id, logs, epoch, scope)]);
      }
      return writeState(ctx, id, { state, message, expectedVersion, epoch });
    },
  );

  app.post(
    "/api/flow-runs/:id/cancel",
    {
      schema: {
        summary: "Cancel a flow run: at once when it has not started, through Cancelling when it runs",
        tags: ["flow runs"],
        params: IdParams,
        response: withErrors({ 200: FlowRun }),
      },
    },
    async (request) => {
      const { id } = request.params;
      for (let attempt = 1; ; attempt++) {
        const run = await requireFlowRun(ctx.store, id);
        if (isFinalState(run.state)) {
          throw new BerthError("BERTH_E_INVALID_TRANSITION", `flow run ${id} is already ${run.state}: there is nothing to cancel`, {
            details: { from: run.state, to: "Cancelled" },
          });
        }
        const target = cancelTarget(run.state);
        if (target === undefined) return run;
        try {
          const message = target === "Cancelled" ? "cancelled by user" : "cancellation requested by user";
          const updated = await writeState(ctx, id, { state: target, message, expectedVersion: run.version });
          request.log.info({ flowRunId: id, state: target }, "flow run cancelled by user");
          return updated;
        } catch (err) {
          // Racing another writer (the run starting, an agent claiming it): re-read and decide again.
          if (!isBerthError(err, "BERTH_E_STALE_VERSION") || attempt >= CANCEL_ATTEMPTS) throw err;
        }
      }
    },
  );

  app.post(
    "/api/flow-runs/:id/phases",
    {
      config: { access: "run-write" },
      schema: {
        summary: "The agent reports steps of its attempt (image ready, container created and started, cleaned up); answers with the run",
        tags: ["flow runs"],
        params: IdParams,
        body: PhasesReport.strict(),
        response: withErrors({ 200: FlowRun }),
      },
    },
    async (request) => {
      const { epoch, ...phases } = request.body;
      const run = await ctx.store.recordPhases(request.params.id, epoch, phases);
      if (!run) throw flowRunNotFound(request.params.id);
      // The last step: the attempt's whole timeline is known, and goes to /metrics once.
      if (phases.cleanedUp !== undefined && run.phases) ctx.metrics.phases(run.phases);
      return run;
    },
  );

  app.post(
    "/api/flow-runs/:id/heartbeat",
    {
      config: { access: "run-write" },
      schema: {
        summary: "The run's container is alive; answers with the run's state and epoch so it can notice Cancelling or a newer attempt",
        tags: ["flow runs"],
        params: IdParams,
        // Optional: containers of earlier versions send no body at all (which Fastify hands over as null).
        body: FlowRunHeartbeat.strict().nullish(),
        response: withErrors({ 200: FlowRunHeartbeatReply }),
      },
    },
    async (request) => {
      const run = await ctx.store.heartbeatFlowRun(request.params.id, request.body?.epoch);
      if (!run) throw flowRunNotFound(request.params.id);
      return { state: run.state, epoch: run.epoch };
    },
  );
}

/** Where a user's cancel takes a run that is not final; undefined when it is already on its way. */
function cancelTarget(state: FlowRunStateName): FlowRunStateName | undefined {
  if (state === "Scheduled" || state === "Submitted") return "Cancelled";
  if (state === "Running") return "Cancelling";
  return undefined;
}

function staleVersion(id: string, expected: number, actual: number): BerthError {
  return new BerthError("BERTH_E_STALE_VERSION", `flow run ${id} is at version ${actual}, not ${expected}: re-read it and try again`, {
    details: { expected, actual },
  });
}

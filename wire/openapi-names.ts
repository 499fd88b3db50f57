/**
 * The names the OpenAPI document gives the API's types (`components/schemas`), so that a client generated
 * from it in any language gets named types (`Flow`, `FlowRun`, `Agent`, …) instead of an anonymous shape per
 * route. A schema named here is written once and referenced everywhere it appears; each also gets an
 * `…Input` twin where what a client sends differs from what the server answers (defaults filled in).
 */
import { z } from "zod";
import * as wire from "./schema.js";

export const apiSchemas = z.registry<{ id: string }>();

const NAMES: [z.ZodType, string][] = [
  [wire.ErrorBodySchema, "Error"],
  [wire.Health, "Health"],
  [wire.Labels, "Labels"],
  [wire.StorageSpec, "Storage"],
  [wire.EnvironmentSpec, "Environment"],
  [wire.ParameterSpec, "Parameter"],
  [wire.RecoveryPolicy, "RecoveryPolicy"],
  [wire.ClockSpec, "Clock"],
  [wire.Resources, "Resources"],
  [wire.PlacementConstraint, "PlacementConstraint"],
  [wire.BuildContextRef, "BuildContextRef"],
  [wire.FlowCreate, "FlowCreate"],
  [wire.FlowRecord, "Flow"],
  [wire.FlowRegistered, "FlowRegistered"],
  [wire.FlowList, "FlowList"],
  [wire.FlowRunStateName, "FlowRunState"],
  [wire.TaskRunStateName, "TaskRunState"],
  [wire.FlowRunCreate, "FlowRunCreate"],
  [wire.RunPhases, "RunPhases"],
  [wire.FlowRun, "FlowRun"],
  [wire.FlowRunView, "FlowRunView"],
  [wire.FlowRunCreated, "FlowRunCreated"],
  [wire.FlowRunList, "FlowRunList"],
  [wire.StateChange, "StateChange"],
  [wire.FlowRunStateEntry, "FlowRunStateEntry"],
  [wire.TaskRun, "TaskRun"],
  [wire.LogLevel, "LogLevel"],
  [wire.LogLine, "LogLine"],
  [wire.StoredLog, "StoredLog"],
  [wire.LogsPage, "LogsPage"],
  [wire.AgentHealthReport, "AgentHealth"],
  [wire.AgentRecord, "Agent"],
  [wire.AgentList, "AgentList"],
  [wire.ClaimedRun, "ClaimedRun"],
  [wire.ClaimReply, "ClaimReply"],
  [wire.ScheduleView, "Schedule"],
  [wire.ConcurrencyLimit, "ConcurrencyLimit"],
  [wire.TokenRecord, "Token"],
  [wire.SecretInfo, "Secret"],
];
for (const [schema, id] of NAMES) apiSchemas.add(schema, { id });

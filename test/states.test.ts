import { describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import { FLOW_RUN_STATES, type FlowRunStateName } from "../wire/schema.js";
import { assertTransition, canTransition, isFinalState } from "../server/states.js";

const ALLOWED: Record<FlowRunStateName, FlowRunStateName[]> = {
  Scheduled: ["Cancelled"],
  Submitted: ["Submitted", "Running", "Failed", "Cancelled", "Scheduled"],
  Running: ["Running", "Success", "Failed", "Cancelling", "Cancelled"],
  Cancelling: ["Cancelled", "Failed", "Success"],
  Success: [],
  Failed: [],
  Cancelled: [],
};

describe("flow-run state transitions", () => {
  for (const from of FLOW_RUN_STATES) {
    for (const to of FLOW_RUN_STATES) {
      const allowed = ALLOWED[from].includes(to);
      it(`${from} → ${to} is ${allowed ? "allowed" : "refused"}`, () => {
        expect(canTransition(from, to)).toBe(allowed);
      });
    }
  }

  it("refuses with BERTH_E_INVALID_TRANSITION naming both states", () => {
    let caught: unknown;
    try {
      assertTransition("run-1", "Success", "Running");
    } catch (err) {
      caught = err;
    }
    expect(isBerthError(caught, "BERTH_E_INVALID_TRANSITION")).toBe(true);
    expect((caught as Error).message).toContain("Success");
    expect((caught as Error).message).toContain("Running");
    expect(() => assertTransition("run-1", "Submitted", "Running")).not.toThrow();
    // Only a claim submits a run: a late state write must not take a rescheduled run back from the queue.
    expect(() => assertTransition("run-1", "Scheduled", "Submitted")).toThrow("from Scheduled a run may go to Cancelled");
  });

  it("knows the final states", () => {
    expect(FLOW_RUN_STATES.filter(isFinalState)).toEqual(["Success", "Failed", "Cancelled"]);
  });
});

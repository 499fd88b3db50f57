import { afterEach, describe, expect, it, vi } from "vitest";
import { checkDebootstrap } from "../images/debootstrap.js";
import { isBerthError } from "../wire/errors.js";

async function failure(check: Promise<unknown>): Promise<Error> {
  const err = await check.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBerthError(err, "BERTH_E_IMAGE_BUILD"), String(err)).toBe(true);
  return err as Error;
}

describe.runIf(process.platform === "linux")("making a Debian root filesystem on this host", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("says which package to install when debootstrap is missing", async () => {
    const err = await failure(checkDebootstrap(["/nonexistent/sbin/debootstrap"]));
    expect(err.message).toContain("/nonexistent/sbin/debootstrap");
    expect(err.message).toContain("apt-get install -y debootstrap");
  });

  it("says it needs root", async () => {
    vi.spyOn(process, "getuid").mockReturnValue(1000);
    // Any readable file stands in for debootstrap: the root check comes after the one for the program.
    const err = await failure(checkDebootstrap([process.execPath]));
    expect(err.message).toMatch(/debootstrap needs root .*sudo/);
  });
});

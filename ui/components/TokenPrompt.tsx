/** Asks for an API token when the server requires one; kept in this tab's session storage only. */
import { useState } from "preact/hooks";
import { setToken } from "../api.js";

export function TokenPrompt({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState("");
  return (
    <div class="overlay">
      <form
        class="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          setToken(value);
          onDone();
        }}
      >
        <h2>This server needs a token</h2>
        <p>
          Paste an admin token (<code>berth token create</code>, or the <code>admin.token</code> file in the server's home). It stays in this tab
          only.
        </p>
        <input type="password" autoFocus value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} aria-label="API token" placeholder="berth_admin_…" />
        <div class="actions">
          <button type="submit" disabled={value.trim() === ""}>
            Use this token
          </button>
        </div>
      </form>
    </div>
  );
}

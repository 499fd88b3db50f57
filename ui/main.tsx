/** berth's web UI: four pages on the HTTP API, routed by the URL's hash (#/flows, #/runs, #/runs/ID, #/agents). */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { getToken, onUnauthorized, setToken } from "./api.js";
import { TokenPrompt } from "./components/TokenPrompt.js";
import { AgentsPage } from "./pages/AgentsPage.js";
import { FlowsPage } from "./pages/FlowsPage.js";
import { RunPage } from "./pages/RunPage.js";
import { RunsPage } from "./pages/RunsPage.js";
import "./style.css";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function App() {
  const hash = useHash();
  const [asking, setAsking] = useState(false);
  // A new token remounts the page, so that everything is fetched again with it.
  const [generation, setGeneration] = useState(0);
  useEffect(() => onUnauthorized(() => setAsking(true)), []);
  const path = hash.replace(/^#/, "") || "/runs";
  const run = /^\/runs\/([^/]+)$/.exec(path);
  const page = run ? <RunPage id={decodeURIComponent(run[1]!)} /> : path.startsWith("/flows") ? <FlowsPage /> : path.startsWith("/agents") ? <AgentsPage /> : <RunsPage />;
  const tab = (href: string, label: string) => (
    <a href={href} class={path.startsWith(href.slice(1)) ? "active" : ""}>
      {label}
    </a>
  );
  return (
    <>
      <header>
        <a href="#/runs" class="brand">
          berth
        </a>
        <nav>
          {tab("#/flows", "Flows")}
          {tab("#/runs", "Runs")}
          {tab("#/agents", "Agents")}
        </nav>
        {getToken() && (
          <button
            class="link"
            onClick={() => {
              setToken(null);
              setGeneration((g) => g + 1);
            }}
          >
            forget token
          </button>
        )}
      </header>
      <div key={generation}>{page}</div>
      {asking && (
        <TokenPrompt
          onDone={() => {
            setAsking(false);
            setGeneration((g) => g + 1);
          }}
        />
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);

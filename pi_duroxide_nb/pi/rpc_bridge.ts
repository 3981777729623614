/**
 * pi_duroxide_nb's bridge inside pi: what `pi --mode rpc` has no command for.
 *
 * `pdn.PiRpcHost` starts pi with `-e <this file>` and sends
 * `{"type": "prompt", "message": "/pi-duroxide-nb <json>"}`. pi runs the command before it answers
 * the prompt, and the command reports its outcome as a `notify` extension UI request whose message
 * is `pi_duroxide_nb.result <json>` ({"id", "ok", "result"} or {"id", "ok": false, "error", "kind"}).
 *
 * Operations (the JSON's "op"):
 * - tool: run one of pi's built-in tools (read, bash, edit, write, ls, grep, find) with pi's own
 *   tool definition, the session's cwd and the shell/image settings pi gives its tools; arguments
 *   are checked against the tool's schema (PiRpcHost applies its own allow-list before asking).
 * - llm: one model call without an agent loop, on the session's model (or "provider/id"), with
 *   pi's API key resolution; tools are offered only when asked.
 * - turn: prepares the next prompt. "fresh": go back to the start of the session tree (pi's
 *   /tree navigation, without a summary), so the model sees only the new turn; pi's `new_session`
 *   would reload every extension for each turn (and with --no-session pi 0.73 writes its session
 *   files into cwd). Options for that turn (system prompt, active tools, model) are undone at
 *   agent_end.
 * - send: append a custom message to the session (customType "workflow_message").
 */

import type { ExtensionAPI } from "@mariozechner/pi-coding-agent";

const COMMAND = "pi-duroxide-nb";
const RESULT_PREFIX = "pi_duroxide_nb.result ";

type Outcome = { ok: true; result: unknown } | { ok: false; error: string; kind: string };

class BridgeError extends Error {
	constructor(
		message: string,
		readonly kind: string,
	) {
		super(message);
	}
}

async function importFirst(names: string[]): Promise<any> {
	const failures: string[] = [];
	for (const name of names) {
		try {
			return await import(name);
		} catch (err) {
			failures.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
		}
	}
	throw new Error(`pi_duroxide_nb bridge: cannot import pi's modules (${failures.join("; ")})`);
}

export default async function (pi: ExtensionAPI) {
	// The package was renamed; the running pi aliases whichever name it has.
	const agent = await importFirst(["@mariozechner/pi-coding-agent", "@earendil-works/pi-coding-agent"]);
	const ai = await importFirst(["@mariozechner/pi-ai", "@earendil-works/pi-ai"]);

	let pendingSystemPrompt: string | undefined;
	let restore: (() => Promise<void>) | undefined;

	function findModel(ctx: any, spec: string | undefined): any {
		if (!spec) {
			if (!ctx.model) {
				throw new BridgeError(
					"pi has no model selected. Start it with --provider/--model (PiRpcHost(provider=..., model=...)) or configure a default model in pi's settings.",
					"ModelError",
				);
			}
			return ctx.model;
		}
		const slash = spec.indexOf("/");
		const provider = slash === -1 ? ctx.model?.provider : spec.slice(0, slash);
		const id = slash === -1 ? spec : spec.slice(slash + 1);
		const found = provider ? ctx.modelRegistry.find(provider, id) : undefined;
		if (!found) {
			const known = ctx.modelRegistry
				.getAll()
				.map((m: any) => `${m.provider}/${m.id}`)
				.slice(0, 20)
				.join(", ");
			throw new BridgeError(`pi knows no model ${JSON.stringify(spec)}. Some models it knows: ${known}.`, "ModelError");
		}
		return found;
	}

	let settingsFor: { cwd: string; settings: any } | undefined;
	function settings(ctx: any): any {
		// Read once, as pi reads its own settings once at start.
		if (settingsFor?.cwd !== ctx.cwd) {
			settingsFor = { cwd: ctx.cwd, settings: agent.SettingsManager.create(ctx.cwd, agent.getAgentDir()) };
		}
		return settingsFor.settings;
	}

	function toolDefinitions(ctx: any): Record<string, any> {
		const s = settings(ctx);
		return {
			read: agent.createReadToolDefinition(ctx.cwd, { autoResizeImages: s.getImageAutoResize() }),
			bash: agent.createBashToolDefinition(ctx.cwd, {
				commandPrefix: s.getShellCommandPrefix(),
				shellPath: s.getShellPath(),
			}),
			edit: agent.createEditToolDefinition(ctx.cwd),
			write: agent.createWriteToolDefinition(ctx.cwd),
			ls: agent.createLsToolDefinition(ctx.cwd),
			grep: agent.createGrepToolDefinition(ctx.cwd),
			find: agent.createFindToolDefinition(ctx.cwd),
		};
	}

	async function runTool(input: any, ctx: any): Promise<unknown> {
		const name = String(input.name);
		const definitions = toolDefinitions(ctx);
		const definition = definitions[name];
		if (!definition) {
			throw new BridgeError(
				`pi has no built-in tool ${JSON.stringify(name)}; PiRpcHost runs pi's built-in tools: ${Object.keys(definitions).join(", ")}.`,
				"ToolError",
			);
		}
		let args = input.args ?? {};
		if (typeof definition.prepareArguments === "function") {
			args = definition.prepareArguments(args);
		}
		const callId = `pdn_${Date.now().toString(36)}`;
		try {
			args = ai.validateToolArguments(definition, { type: "toolCall", id: callId, name, arguments: args });
		} catch (err) {
			throw new BridgeError(err instanceof Error ? err.message : String(err), "ToolError");
		}
		try {
			const result = await definition.execute(callId, args, undefined, undefined, ctx);
			return { content: result.content, details: result.details ?? null };
		} catch (err) {
			throw new BridgeError(`pi's ${name} tool failed: ${err instanceof Error ? err.message : String(err)}`, "ToolError");
		}
	}

	async function runLlm(input: any, ctx: any): Promise<unknown> {
		const options = input.options ?? {};
		const model = findModel(ctx, options.model);
		const auth = await ctx.modelRegistry.getApiKeyAndHeaders(model);
		if (!auth.ok) {
			throw new BridgeError(`pi cannot call ${model.provider}/${model.id}: ${auth.error}`, "ModelError");
		}
		let tools: any[] | undefined;
		if (options.tools) {
			const active = new Set(pi.getActiveTools());
			const all = pi.getAllTools();
			const wanted =
				options.tools === true
					? all.filter((t: any) => active.has(t.name))
					: all.filter((t: any) => options.tools.includes(t.name));
			if (Array.isArray(options.tools)) {
				const missing = options.tools.filter((n: string) => !wanted.some((t: any) => t.name === n));
				if (missing.length > 0) {
					throw new BridgeError(
						`ctx.pi.llm(tools=...) names tools pi does not have: ${missing.join(", ")}; it has: ${all.map((t: any) => t.name).join(", ")}.`,
						"ToolError",
					);
				}
			}
			tools = wanted.map((t: any) => ({ name: t.name, description: t.description, parameters: t.parameters }));
		}
		const now = Date.now();
		const messages = (input.messages ?? []).map((m: any) => ({ timestamp: now, ...m }));
		const reply = await ai.completeSimple(
			model,
			{ systemPrompt: input.systemPrompt ?? undefined, messages, tools },
			{
				apiKey: auth.apiKey,
				headers: auth.headers,
				temperature: options.temperature ?? undefined,
				maxTokens: options.maxTokens ?? undefined,
				// the provider-level timeout and retries pi's own model calls use
				...settings(ctx).getProviderRetrySettings(),
			},
		);
		if (reply.stopReason === "error" || reply.stopReason === "aborted") {
			throw new BridgeError(
				`${model.provider}/${model.id} failed: ${reply.errorMessage ?? reply.stopReason}`,
				"ModelError",
			);
		}
		return reply;
	}

	async function prepareTurn(input: any, ctx: any): Promise<unknown> {
		if (restore) await restore();
		if (input.fresh) {
			// Navigating to the first user (or custom) message puts the leaf on its parent: the
			// branch then holds no messages, and the next prompt starts a new root.
			const first = ctx.sessionManager
				.getBranch()
				.find((e: any) => (e.type === "message" && e.message.role === "user") || e.type === "custom_message");
			if (first) {
				const moved = await ctx.navigateTree(first.id, { summarize: false });
				if (moved.cancelled) {
					throw new BridgeError("an extension cancelled going back to the start of pi's session", "ProtocolError");
				}
			}
		}
		const undo: Array<() => Promise<void> | void> = [];
		if (input.systemPrompt != null) {
			pendingSystemPrompt = String(input.systemPrompt);
			undo.push(() => {
				pendingSystemPrompt = undefined;
			});
		}
		if (input.tools != null) {
			const before = pi.getActiveTools();
			const names = input.tools === false ? [] : (input.tools as string[]);
			const known = new Set(pi.getAllTools().map((t: any) => t.name));
			const unknown = names.filter((n) => !known.has(n));
			if (unknown.length > 0) {
				throw new BridgeError(
					`ctx.pi.prompt(tools=...) names tools pi does not have: ${unknown.join(", ")}; it has: ${[...known].join(", ")}.`,
					"ToolError",
				);
			}
			pi.setActiveTools(names);
			undo.push(() => pi.setActiveTools(before));
		}
		if (input.model != null) {
			const before = ctx.model;
			const model = findModel(ctx, String(input.model));
			if (!(await pi.setModel(model))) {
				throw new BridgeError(`pi has no API key for ${model.provider}/${model.id}.`, "ModelError");
			}
			if (before) undo.push(async () => void (await pi.setModel(before)));
		}
		restore = async () => {
			restore = undefined;
			for (const step of undo.reverse()) await step();
		};
		return { prepared: true };
	}

	pi.on("before_agent_start", async () => {
		if (pendingSystemPrompt !== undefined) return { systemPrompt: pendingSystemPrompt };
		return undefined;
	});

	pi.on("agent_end", async () => {
		if (restore) await restore();
	});

	pi.registerCommand(COMMAND, {
		description: "pi_duroxide_nb's bridge for PiRpcHost (machine use only)",
		handler: async (args, ctx) => {
			let id: unknown = null;
			let outcome: Outcome;
			try {
				const input = JSON.parse(args);
				id = input.id ?? null;
				let result: unknown;
				switch (input.op) {
					case "tool":
						result = await runTool(input, ctx);
						break;
					case "llm":
						result = await runLlm(input, ctx);
						break;
					case "turn":
						result = await prepareTurn(input, ctx);
						break;
					case "send": {
						const content = typeof input.content === "string" ? input.content : JSON.stringify(input.content);
						pi.sendMessage({ customType: "workflow_message", content, display: true, details: input.content });
						result = { sent: true };
						break;
					}
					default:
						throw new BridgeError(`unknown bridge operation ${JSON.stringify(input.op)}`, "ProtocolError");
				}
				outcome = { ok: true, result };
			} catch (err) {
				outcome = {
					ok: false,
					error: err instanceof Error ? err.message : String(err),
					kind: err instanceof BridgeError ? err.kind : "Error",
				};
			}
			ctx.ui.notify(RESULT_PREFIX + JSON.stringify({ id, ...outcome }), "info");
		},
	});
}

/**
 * A pi extension for the PiRpcHost tests: provider "pdn-test", model "echo", answering from rules
 * instead of a network, so no API key is needed.
 *
 * The model looks at the last message of its context:
 * - a tool result            -> text "done: <the result's text>" (first 200 characters)
 * - "call NAME {json}"       -> a tool call of NAME with those arguments
 * - "system?"                -> the system prompt it was given
 * - "tools?"                 -> the names of the tools it was offered, comma-separated
 * - "fail: MESSAGE"          -> an error reply with MESSAGE
 * - "sleep: MS"              -> waits MS milliseconds (stops when aborted), then answers "slept"
 * - "count?"                 -> the number of messages in its context
 * - "flaky: X"               -> the first time: an error pi retries ("503 service unavailable");
 *                               the second time: "recovered: X"
 * - anything else            -> text "echo(<pid of pi's parent>): <the text>"
 *
 * Each model call appends pi's parent pid (the Python process) to $PDN_TEST_MODEL_LOG if set.
 * A tool_call hook asks for confirmation (an extension UI dialog) before `bash` runs: the host
 * answers it, or cancels it and the call is blocked.
 */

import { appendFileSync } from "node:fs";
import type { ExtensionAPI } from "@mariozechner/pi-coding-agent";
import { createAssistantMessageEventStream } from "@mariozechner/pi-ai";

function lastText(message: any): string {
	if (!message) return "";
	if (typeof message.content === "string") return message.content;
	return (message.content ?? [])
		.filter((b: any) => b.type === "text")
		.map((b: any) => b.text)
		.join("");
}

export default function (pi: ExtensionAPI) {
	let calls = 0;
	const flaky = new Set<string>();

	function stream(model: any, context: any, options: any) {
		const out = createAssistantMessageEventStream();
		calls += 1;
		const log = process.env.PDN_TEST_MODEL_LOG;
		if (log) appendFileSync(log, `${process.ppid}\n`);
		(async () => {
			const message: any = {
				role: "assistant",
				content: [],
				api: model.api,
				provider: model.provider,
				model: model.id,
				usage: {
					input: 10,
					output: 5,
					cacheRead: 0,
					cacheWrite: 0,
					totalTokens: 15,
					cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 },
				},
				stopReason: "stop",
				timestamp: Date.now(),
			};
			const last = context.messages[context.messages.length - 1];
			const text = lastText(last);
			let match: RegExpMatchArray | null;
			if (last?.role === "toolResult") {
				message.content.push({ type: "text", text: `done: ${text.slice(0, 200)}` });
			} else if ((match = text.match(/^call (\S+) (\{.*\})$/s))) {
				message.content.push({ type: "toolCall", id: `call_${calls}`, name: match[1], arguments: JSON.parse(match[2]) });
				message.stopReason = "toolUse";
			} else if (text === "system?") {
				message.content.push({ type: "text", text: context.systemPrompt ?? "" });
			} else if (text === "tools?") {
				message.content.push({ type: "text", text: (context.tools ?? []).map((t: any) => t.name).join(",") });
			} else if (text === "count?") {
				message.content.push({ type: "text", text: String(context.messages.length) });
			} else if (text.startsWith("flaky: ")) {
				if (flaky.has(text)) {
					message.content.push({ type: "text", text: `recovered: ${text.slice(7)}` });
				} else {
					flaky.add(text);
					message.stopReason = "error";
					message.errorMessage = "503 service unavailable";
				}
			} else if (text.startsWith("fail: ")) {
				message.stopReason = "error";
				message.errorMessage = text.slice(6);
			} else if ((match = text.match(/^sleep: (\d+)$/))) {
				const ms = Number(match[1]);
				await new Promise<void>((resolve) => {
					const timer = setTimeout(resolve, ms);
					options?.signal?.addEventListener("abort", () => {
						clearTimeout(timer);
						resolve();
					});
				});
				message.content.push({ type: "text", text: "slept" });
			} else {
				message.content.push({ type: "text", text: `echo(${process.ppid}): ${text}` });
			}
			out.push({ type: "start", partial: { ...message, content: [] } });
			if (message.stopReason === "error") {
				out.push({ type: "error", reason: "error", error: message });
			} else {
				out.push({ type: "done", reason: message.stopReason, message });
			}
			out.end(message);
		})();
		return out;
	}

	pi.registerProvider("pdn-test", {
		name: "pi_duroxide_nb test provider",
		baseUrl: "http://127.0.0.1:9",
		apiKey: "pdn-test-key",
		api: "pdn-test-api",
		models: [
			{
				id: "echo",
				name: "Echo",
				reasoning: false,
				input: ["text"],
				cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
				contextWindow: 100000,
				maxTokens: 4096,
			},
		],
		streamSimple: stream,
	});

	pi.on("tool_call", async (event, ctx) => {
		if (event.toolName !== "bash") return undefined;
		const ok = await ctx.ui.confirm("Run bash?", String((event.input as any).command));
		return ok ? undefined : { block: true, reason: "bash was not confirmed" };
	});
}

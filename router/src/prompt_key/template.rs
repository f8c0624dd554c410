//! The model's Jinja chat template, compiled once and rendered as HuggingFace's
//! `apply_chat_template` renders it for vLLM (trimmed blocks, Python-style methods, special
//! tokens as variables), so token-mode chat keys are vLLM's prompt token ids.
//!
//! Where it comes from, first found: `prefix.chat_template` (inline Jinja, or a path to a
//! template file or to a `tokenizer_config.json`), then `chat_template.jinja` or
//! `tokenizer_config.json`'s `chat_template` beside the `prefix.tokenizer` file.

use std::path::{Path, PathBuf};

use minijinja::value::Value as Jinja;
use serde_json::Value;

pub(crate) use super::conversation::to_jinja;
use super::conversation::{ContentFormat, conversation};
use crate::Error;
use crate::request::KeyInput;
use crate::request::RawTools;

const DEFAULT: &str = "default";
const TOOL_USE: &str = "tool_use";
/// Special-token variables HuggingFace passes to every template.
const SPECIALS: [&str; 4] = ["bos_token", "eos_token", "unk_token", "pad_token"];

/// A compiled chat template and the special tokens it may print.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    has_tool_use: bool,
    format: ContentFormat,
    specials: Vec<(&'static str, String)>,
    origin: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("format", &self.format)
            .finish()
    }
}

fn config_error(origin: impl std::fmt::Display, reason: impl Into<String>) -> Error {
    Error::Config {
        origin: origin.to_string(),
        key: "prefix.chat_template".to_owned(),
        reason: reason.into(),
    }
}

impl ChatTemplate {
    /// The template for `tokenizer` (a `tokenizer.json` path) and the optional configured
    /// `chat_template`; `None` when neither names one. Errors name the file and the reason.
    pub fn load(
        chat_template: Option<&str>,
        tokenizer: Option<&Path>,
    ) -> Result<Option<Self>, Error> {
        let beside = |name: &str| tokenizer.and_then(Path::parent).map(|d| d.join(name));
        let tokenizer_config = beside("tokenizer_config.json").filter(|p| p.is_file());
        let config_json = match &tokenizer_config {
            Some(path) => Some(read_json(path)?),
            None => None,
        };
        let specials = config_json.as_ref().map(special_tokens).unwrap_or_default();
        let (source, origin) = match chat_template {
            Some(inline) if inline.contains(['{', '}', '\n']) => (
                Source::One(inline.to_owned()),
                "prefix.chat_template".to_owned(),
            ),
            Some(path) => {
                let path = PathBuf::from(path);
                let source = if path.extension().is_some_and(|e| e == "json") {
                    let json = read_json(&path)?;
                    Source::from_config(&json)
                        .ok_or_else(|| config_error(path.display(), "has no `chat_template`"))?
                } else {
                    Source::One(read_text(&path)?)
                };
                (source, path.display().to_string())
            }
            None => {
                let jinja = beside("chat_template.jinja").filter(|p| p.is_file());
                match (jinja, &config_json, &tokenizer_config) {
                    (Some(path), ..) => {
                        (Source::One(read_text(&path)?), path.display().to_string())
                    }
                    (None, Some(json), Some(path)) => match Source::from_config(json) {
                        Some(source) => (source, path.display().to_string()),
                        None => return Ok(None),
                    },
                    _ => return Ok(None),
                }
            }
        };
        Self::compile(source, specials, origin).map(Some)
    }

    fn compile(
        source: Source,
        specials: Vec<(&'static str, String)>,
        origin: String,
    ) -> Result<Self, Error> {
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| config_error(&origin, e.to_string()))?;
        env.set_syntax(syntax);
        super::pycompat::install(&mut env);
        let templates = match source {
            Source::One(text) => vec![(DEFAULT.to_owned(), text)],
            Source::Named(list) => list,
        };
        let mut format = ContentFormat::String;
        let mut has_tool_use = false;
        for (name, text) in templates {
            if name == DEFAULT {
                format = ContentFormat::detect(&text);
            }
            has_tool_use |= name == TOOL_USE;
            env.add_template_owned(name.clone(), text).map_err(|e| {
                config_error(&origin, format!("template `{name}` does not compile: {e}"))
            })?;
        }
        if env.get_template(DEFAULT).is_err() {
            return Err(config_error(&origin, "no template named \"default\""));
        }
        Ok(Self {
            env,
            has_tool_use,
            format,
            specials,
            origin,
        })
    }

    /// Where the template was loaded from (for logs).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The prompt text vLLM renders for this chat request, or why it cannot be rendered.
    pub fn render(&self, input: &KeyInput) -> Result<String, String> {
        let messages = input.messages.as_ref().ok_or("no `messages`")?;
        let conv = conversation(messages, self.format)?;
        let tools = input.tools.as_ref().and_then(RawTools::parse);
        let tools = tools.as_ref().map(vllm_tools);
        let name = if tools.is_some() && self.has_tool_use {
            TOOL_USE
        } else {
            DEFAULT
        };
        let mut ctx: Vec<(String, Jinja)> = self
            .specials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Jinja::from(v.as_str())))
            .collect();
        ctx.push(("messages".into(), conv.clone()));
        ctx.push(("tools".into(), tools.unwrap_or(Jinja::from(()))));
        ctx.push((
            "documents".into(),
            input.documents.as_ref().map_or(Jinja::from(()), to_jinja),
        ));
        ctx.push((
            "add_generation_prompt".into(),
            Jinja::from(input.add_generation_prompt()),
        ));
        ctx.push((
            "continue_final_message".into(),
            Jinja::from(input.continue_final_message()),
        ));
        if let Some(kwargs) = &input.chat_template_kwargs {
            for (k, v) in kwargs {
                if k != "chat_template" && k != "tokenize" {
                    ctx.push((k.clone(), to_jinja(v)));
                }
            }
        }
        let template = self.env.get_template(name).map_err(|e| e.to_string())?;
        let rendered = template
            .render(Jinja::from_pairs(ctx))
            .map_err(|e| format!("{e:#}"))?;
        if input.continue_final_message() {
            return continue_final(rendered, &conv);
        }
        Ok(rendered)
    }
}

/// Cuts the rendering right after the last message's text, so the reply continues it
/// (HuggingFace's `continue_final_message`).
fn continue_final(rendered: String, conv: &Jinja) -> Result<String, String> {
    let last = conv
        .len()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| conv.get_item_by_index(i).ok())
        .ok_or("continue_final_message without messages")?;
    let content = last.get_attr("content").map_err(|e| e.to_string())?;
    let text = match content.as_str() {
        Some(s) => s.to_owned(),
        None => content
            .try_iter()
            .map_err(|e| e.to_string())?
            .filter_map(|p| {
                p.get_attr("text")
                    .ok()
                    .and_then(|t| t.as_str().map(str::to_owned))
            })
            .last()
            .ok_or("the final message has no text to continue")?,
    };
    let trimmed = text.trim();
    let at = rendered
        .rfind(trimmed)
        .ok_or("the final message is not in the rendered template")?;
    // The template kept the message's own trailing spacing: keep it too.
    let keep = if text.trim_start() == text && rendered[at..].starts_with(text.as_str()) {
        at + text.len()
    } else {
        at + trimmed.len()
    };
    let mut rendered = rendered;
    rendered.truncate(keep);
    Ok(rendered)
}

enum Source {
    One(String),
    Named(Vec<(String, String)>),
}

impl Source {
    /// `chat_template` of a `tokenizer_config.json`: a string, or a list of
    /// `{"name", "template"}` (the one named "default" renders plain chats).
    fn from_config(json: &Value) -> Option<Self> {
        match json.get("chat_template")? {
            Value::String(s) => Some(Self::One(s.clone())),
            Value::Array(list) => Some(Self::Named(
                list.iter()
                    .filter_map(|t| {
                        let name = t.get("name")?.as_str()?;
                        let text = t.get("template")?.as_str()?;
                        Some((name.to_owned(), text.to_owned()))
                    })
                    .collect(),
            )),
            _ => None,
        }
    }
}

/// `bos_token` and friends of a `tokenizer_config.json`: strings or `{"content": ...}` objects.
fn special_tokens(json: &Value) -> Vec<(&'static str, String)> {
    SPECIALS
        .iter()
        .filter_map(|&key| {
            let v = json.get(key)?;
            let text = v.as_str().or_else(|| v.get("content")?.as_str())?;
            Some((key, text.to_owned()))
        })
        .collect()
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| config_error(path.display(), format!("cannot read: {e}")))
}

fn read_json(path: &Path) -> Result<Value, Error> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| config_error(path.display(), format!("invalid JSON: {e}")))
}

/// `tools` as vLLM hands them to templates, re-shaped by its request model: each tool
/// `{"type", "function": {"name", "description", "parameters", ...}, ...}`, declared fields first
/// (`null` when absent), then any other keys in the client's order.
fn vllm_tools(tools: &Jinja) -> Jinja {
    let Ok(iter) = tools.try_iter() else {
        return tools.clone();
    };
    iter.map(|tool| {
        let function = tool.get_attr("function").unwrap_or_default();
        if tool.kind() != minijinja::value::ValueKind::Map
            || function.kind() != minijinja::value::ValueKind::Map
        {
            return tool;
        }
        let ty = tool.get_attr("type").ok().filter(|t| !t.is_undefined());
        let mut top = vec![
            (
                "type".to_owned(),
                ty.unwrap_or_else(|| Jinja::from("function")),
            ),
            (
                "function".to_owned(),
                declared_first(&function, &["name", "description", "parameters"]),
            ),
        ];
        top.extend(extras(&tool, &["type", "function"]));
        Jinja::from_pairs(top)
    })
    .collect()
}

/// `map` with `fields` first (`None` when absent), then its other keys in order.
fn declared_first(map: &Jinja, fields: &[&str]) -> Jinja {
    let mut out: Vec<(String, Jinja)> = fields
        .iter()
        .map(|f| {
            let v = map.get_attr(f).ok().filter(|v| !v.is_undefined());
            ((*f).to_owned(), v.unwrap_or_else(|| Jinja::from(())))
        })
        .collect();
    out.extend(extras(map, fields));
    Jinja::from_pairs(out)
}

fn extras(map: &Jinja, skip: &[&str]) -> Vec<(String, Jinja)> {
    map.try_iter()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            let name = k.as_str()?.to_owned();
            (!skip.contains(&name.as_str())).then(|| (name, map.get_item(&k).unwrap_or_default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The GPU test model's template (`shared/gpu/make_model.py`).
    pub(crate) const TEST_MODEL: &str = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const QWEN2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    /// Qwen2.5's tool-calling layout: whitespace control, `tojson`, `loop.last`, lookbehind.
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;
    /// Mistral's layout: `messages[1:]`, `raise_exception`, `.strip()`, `is defined`.
    const MISTRAL: &str = r"{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'].strip() + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'].strip() + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content']|trim + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
";

    /// Qwen3's layout: `namespace`, `messages[::-1]`, `is string`, `.split(..)[-1]`,
    /// `.lstrip`, `.startswith`, `is false`, a `chat_template_kwargs` switch.
    const QWEN3: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"##;

    fn compiled(src: &str) -> ChatTemplate {
        let specials = vec![
            ("bos_token", "<s>".to_owned()),
            ("eos_token", "</s>".to_owned()),
        ];
        ChatTemplate::compile(Source::One(src.to_owned()), specials, "test".into()).unwrap()
    }

    fn input(messages: serde_json::Value, add_generation_prompt: bool) -> KeyInput {
        KeyInput {
            add_generation_prompt: Some(add_generation_prompt),
            messages: Some(messages),
            ..KeyInput::default()
        }
    }

    fn chat() -> serde_json::Value {
        json!([{"role":"system","content":"  Be brief. "},{"role":"user","content":"What is 2+2?\n"},
            {"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"}])
    }

    /// Expected strings: Python's jinja2 3.1 configured as HuggingFace's `apply_chat_template`
    /// (trim_blocks, lstrip_blocks, loopcontrols, its `tojson` and `raise_exception`).
    #[test]
    fn real_templates_render_as_jinja2_does() {
        let cases = [
            (
                TEST_MODEL,
                chat(),
                true,
                "<|system|>\n  Be brief. </s>\n<|user|>\nWhat is 2+2?\n</s>\n<|assistant|>\n4</s>\n<|user|>\nAnd 3+3?</s>\n<|assistant|>\n",
            ),
            (
                TEST_MODEL,
                chat(),
                false,
                "<|system|>\n  Be brief. </s>\n<|user|>\nWhat is 2+2?\n</s>\n<|assistant|>\n4</s>\n<|user|>\nAnd 3+3?</s>\n",
            ),
            (
                LLAMA3,
                chat(),
                true,
                "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            (
                QWEN2,
                json!(chat().as_array().unwrap()[1..]),
                true,
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?\n<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n",
            ),
            (
                QWEN25,
                chat(),
                false,
                "<|im_start|>system\n  Be brief. <|im_end|>\n<|im_start|>user\nWhat is 2+2?\n<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n",
            ),
            (
                MISTRAL,
                chat(),
                true,
                "<s> [INST]   Be brief. \n\nWhat is 2+2? [/INST] 4</s> [INST] And 3+3? [/INST]",
            ),
        ];
        for (i, (src, messages, agp, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                compiled(src).render(&input(messages, agp)).unwrap(),
                want,
                "case {i}"
            );
        }
    }

    fn tools(json: &str) -> Option<RawTools> {
        Some(RawTools::from_json(json))
    }

    #[test]
    fn tool_calls_and_tools_render_as_jinja2_does() {
        // Key order is the client's (Python's json keeps it), not serde_json's sorted order.
        let messages = json!([{"role":"user","content":"add 1 and 2"},
            {"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function",
                "function":{"arguments":"{\"b\": \"é\", \"a\": 1}","name":"add"}}]},
            {"role":"tool","content":"3","tool_call_id":"c1"},{"role":"tool","content":"ok","tool_call_id":"c2"}]);
        // Through the request body, as a client sends it.
        let raw = format!(
            r#"{{"messages": {messages}, "tools": [{{"type":"function","function":{{"name":"add","description":"Adds","parameters":{{"type":"object","properties":{{"a":{{"type":"integer"}}}}}}}}}}]}}"#
        );
        let body: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let req = KeyInput {
            messages: Some(messages),
            ..KeyInput::from_body(&body, raw.as_bytes())
        };
        assert_eq!(
            compiled(QWEN25).render(&req).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"Adds\", \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}}}}\n</tools><|im_end|>\n<|im_start|>user\nadd 1 and 2<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"b\": \"é\", \"a\": 1}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n3\n</tool_response>\n<tool_response>\nok\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn tools_take_vllms_request_model_shape() {
        // vLLM's pydantic model dumps declared fields first, absent ones as null, extras after.
        let t =
            tools(r#"[{"function":{"strict":true,"name":"f"},"type":"function","x":1}]"#).unwrap();
        let shaped = vllm_tools(&t.parse().unwrap());
        let mut env = minijinja::Environment::new();
        super::super::pycompat::install(&mut env);
        let text = env
            .render_str("{{ t | tojson }}", Jinja::from_pairs([("t", shaped)]))
            .unwrap();
        assert_eq!(
            text,
            r#"[{"type": "function", "function": {"name": "f", "description": null, "parameters": null, "strict": true}, "x": 1}]"#
        );
    }

    #[test]
    fn qwen3_thinking_template_renders_as_jinja2_does() {
        let msgs = json!([{"role":"system","content":"Be terse."},{"role":"user","content":"hi"},
            {"role":"assistant","content":"<think>\nhmm\n</think>\n\nHello!"},{"role":"user","content":"and?"}]);
        let base = "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nand?<|im_end|>\n<|im_start|>assistant\n";
        let mut req = input(msgs, true);
        assert_eq!(compiled(QWEN3).render(&req).unwrap(), base);
        req.chat_template_kwargs = json!({"enable_thinking": false}).as_object().cloned();
        assert_eq!(
            compiled(QWEN3).render(&req).unwrap(),
            format!("{base}<think>\n\n</think>\n\n")
        );
    }

    #[test]
    fn template_errors_are_reported_not_panics() {
        let bad_turns = json!([{"role":"user","content":"a"},{"role":"user","content":"b"}]);
        let e = compiled(MISTRAL)
            .render(&input(bad_turns, true))
            .unwrap_err();
        assert!(e.contains("roles must alternate"), "{e}");
        let e = compiled(TEST_MODEL)
            .render(&input(json!([{"content": "no role"}]), true))
            .unwrap_err();
        assert!(e.contains("messages[0]"), "{e}");
        let e = ChatTemplate::compile(Source::One("{% for %}".into()), vec![], "x.jinja".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.jinja") && e.contains("prefix.chat_template"),
            "{e}"
        );
    }

    #[test]
    fn continue_final_message_stops_inside_the_last_message() {
        let msgs =
            json!([{"role":"user","content":"hi"},{"role":"assistant","content":"Hello th"}]);
        let req = KeyInput {
            continue_final_message: Some(true),
            ..input(msgs, false)
        };
        assert_eq!(
            compiled(TEST_MODEL).render(&req).unwrap(),
            "<|user|>\nhi</s>\n<|assistant|>\nHello th"
        );
        let llama = json!([{"role":"user","content":"hi"},{"role":"assistant","content":"Sure: "}]);
        let req = KeyInput {
            continue_final_message: Some(true),
            ..input(llama, false)
        };
        assert!(
            compiled(LLAMA3)
                .render(&req)
                .unwrap()
                .ends_with("\n\nSure:"),
            "trimmed by the template"
        );
    }

    #[test]
    fn kwargs_and_named_templates() {
        let src = "{% if enable_thinking is defined and not enable_thinking %}<nothink>{% endif %}{{ messages[0]['content'] }}";
        let mut req = input(json!([{"role":"user","content":"q"}]), true);
        req.chat_template_kwargs = Some(
            json!({"enable_thinking": false})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(compiled(src).render(&req).unwrap(), "<nothink>q");
        let named = Source::from_config(&json!({"chat_template": [
            {"name": "default", "template": "plain"}, {"name": "tool_use", "template": "tools"}]}))
        .unwrap();
        let t = ChatTemplate::compile(named, vec![], "cfg".into()).unwrap();
        assert_eq!(t.render(&req).unwrap(), "plain");
        req.tools = tools("[]");
        assert_eq!(t.render(&req).unwrap(), "tools");
    }

    #[test]
    fn loads_from_the_tokenizer_folder_or_config() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tokenizer.json");
        assert!(
            ChatTemplate::load(None, Some(&tok)).unwrap().is_none(),
            "nothing beside it"
        );
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            json!({"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>",
                "chat_template": "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"})
            .to_string(),
        )
        .unwrap();
        let req = input(json!([{"role":"user","content":"x"}]), true);
        let t = ChatTemplate::load(None, Some(&tok)).unwrap().unwrap();
        assert_eq!(t.render(&req).unwrap(), "<s>x</s>");
        let inline = ChatTemplate::load(Some("[{{ messages | length }}]"), Some(&tok))
            .unwrap()
            .unwrap();
        assert_eq!(inline.render(&req).unwrap(), "[1]");
        std::fs::write(dir.path().join("chat_template.jinja"), "J{{ eos_token }}").unwrap();
        let t = ChatTemplate::load(None, Some(&tok)).unwrap().unwrap();
        assert_eq!(t.render(&req).unwrap(), "J</s>", "chat_template.jinja wins");
        let e = ChatTemplate::load(Some("/nonexistent/t.jinja"), Some(&tok))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/t.jinja") && e.contains("prefix.chat_template"),
            "{e}"
        );
        std::fs::write(dir.path().join("tokenizer_config.json"), "{oops").unwrap();
        let e = ChatTemplate::load(None, Some(&tok))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer_config.json") && e.contains("invalid JSON"),
            "{e}"
        );
    }
}

package inference

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
)

// Exchange is what one request/response pair says, before redaction.
type Exchange struct {
	Model        string
	Stream       bool
	System       string
	Prompt       string
	User         string
	Tools        string
	Response     string
	InputTokens  int64
	OutputTokens int64
	StopReason   string
}

// content is a message content: a string or a list of blocks.
type content []byte

func (c *content) UnmarshalJSON(b []byte) error { *c = append((*c)[:0], b...); return nil }

// text flattens a content value: a string, or the text of its blocks.
func (c content) text() string {
	if len(c) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(c, &s) == nil {
		return s
	}
	var blocks []struct {
		Type    string  `json:"type"`
		Text    string  `json:"text"`
		Content content `json:"content"` // tool_result blocks
		Input   content `json:"input"`   // tool_use blocks
	}
	if json.Unmarshal(c, &blocks) == nil {
		var parts []string
		for _, b := range blocks {
			switch {
			case b.Text != "":
				parts = append(parts, b.Text)
			case len(b.Content) > 0:
				parts = append(parts, b.Content.text())
			case len(b.Input) > 0:
				parts = append(parts, string(b.Input))
			}
		}
		return strings.Join(parts, "\n")
	}
	var list []string
	if json.Unmarshal(c, &list) == nil {
		return strings.Join(list, "\n")
	}
	return string(c)
}

type message struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
}

// ParseRequest reads the request body of api's path (an unknown shape
// leaves fields empty).
func ParseRequest(api string, body []byte, x *Exchange) {
	var r struct {
		Model        string    `json:"model"`
		Stream       bool      `json:"stream"`
		System       content   `json:"system"`
		Instructions string    `json:"instructions"`
		Messages     []message `json:"messages"`
		Prompt       content   `json:"prompt"`
		Input        content   `json:"input"`
		User         string    `json:"user"`
		Metadata     struct {
			UserID string `json:"user_id"`
		} `json:"metadata"`
		Tools json.RawMessage `json:"tools"`
	}
	if json.Unmarshal(body, &r) != nil {
		return
	}
	x.Model, x.Stream = r.Model, r.Stream
	var sys, prompt []string
	if s := r.System.text(); s != "" {
		sys = append(sys, s)
	}
	if r.Instructions != "" {
		sys = append(sys, r.Instructions)
	}
	for _, m := range r.Messages {
		t := m.Content.text()
		if m.Role == "system" || m.Role == "developer" {
			sys = append(sys, t)
			continue
		}
		prompt = append(prompt, m.Role+": "+t)
	}
	if t := r.Prompt.text(); t != "" {
		prompt = append(prompt, t)
	}
	if len(r.Input) > 0 {
		var items []message
		if json.Unmarshal(r.Input, &items) == nil && len(items) > 0 && items[0].Role != "" {
			for _, m := range items {
				prompt = append(prompt, m.Role+": "+m.Content.text())
			}
		} else if t := r.Input.text(); t != "" {
			prompt = append(prompt, t)
		}
	}
	x.System, x.Prompt = strings.Join(sys, "\n"), strings.Join(prompt, "\n")
	x.User = r.User
	if x.User == "" {
		x.User = r.Metadata.UserID
	}
	if len(r.Tools) > 0 && string(r.Tools) != "null" {
		x.Tools = string(r.Tools)
	}
}

// chunk is any response body or stream event of either API.
type chunk struct {
	Type    string `json:"type"`
	Model   string `json:"model"`
	Choices []struct {
		Text    string `json:"text"`
		Message struct {
			Content   content         `json:"content"`
			ToolCalls json.RawMessage `json:"tool_calls"`
		} `json:"message"`
		Delta struct {
			Content   string          `json:"content"`
			ToolCalls json.RawMessage `json:"tool_calls"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Content    content `json:"content"` // anthropic message
	StopReason string  `json:"stop_reason"`
	Usage      *usage  `json:"usage"`
	Output     []struct {
		Content content `json:"content"`
	} `json:"output"` // openai responses
	// Stream events.
	Delta struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	Message  *chunk          `json:"message"`  // anthropic message_start
	Response *chunk          `json:"response"` // openai responses response.completed
	Error    json.RawMessage `json:"error"`
}

type usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
}

func (x *Exchange) takeUsage(u *usage) {
	if u == nil {
		return
	}
	if n := u.PromptTokens + u.InputTokens; n > 0 {
		x.InputTokens = n
	}
	if n := u.CompletionTokens + u.OutputTokens; n > 0 {
		x.OutputTokens = n
	}
}

// ParseResponse reads a whole (non-streamed) response body.
func ParseResponse(body []byte, x *Exchange) {
	var c chunk
	if json.Unmarshal(body, &c) != nil {
		x.Response = string(body) // not JSON (an error page): log it as text
		return
	}
	if c.Model != "" {
		x.Model = c.Model
	}
	var parts []string
	for _, ch := range c.Choices {
		if t := ch.Message.Content.text(); t != "" {
			parts = append(parts, t)
		} else if ch.Text != "" {
			parts = append(parts, ch.Text)
		}
		if len(ch.Message.ToolCalls) > 0 && string(ch.Message.ToolCalls) != "null" {
			parts = append(parts, string(ch.Message.ToolCalls))
		}
		if ch.FinishReason != "" {
			x.StopReason = ch.FinishReason
		}
	}
	if t := c.Content.text(); t != "" {
		parts = append(parts, t)
	}
	for _, o := range c.Output {
		if t := o.Content.text(); t != "" {
			parts = append(parts, t)
		}
	}
	if len(c.Error) > 0 {
		parts = append(parts, string(c.Error))
	}
	if c.StopReason != "" {
		x.StopReason = c.StopReason
	}
	x.Response = strings.Join(parts, "\n")
	x.takeUsage(c.Usage)
}

// ParseStream reassembles a server-sent-events response: the text deltas
// of either API in order, usage from whichever event carries it.
func ParseStream(body []byte, x *Exchange) {
	var text strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), len(body)+1)
	var data []byte
	flush := func() {
		defer func() { data = data[:0] }()
		d := bytes.TrimSpace(data)
		if len(d) == 0 || string(d) == "[DONE]" {
			return
		}
		var c chunk
		if json.Unmarshal(d, &c) != nil {
			return
		}
		if c.Model != "" {
			x.Model = c.Model
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				x.StopReason = ch.FinishReason
			}
		}
		switch c.Type {
		case "content_block_delta":
			text.WriteString(c.Delta.Text)
		case "message_start":
			if c.Message != nil {
				if c.Message.Model != "" {
					x.Model = c.Message.Model
				}
				x.takeUsage(c.Message.Usage)
			}
		case "message_delta":
			if c.Delta.StopReason != "" {
				x.StopReason = c.Delta.StopReason
			}
		case "response.output_text.delta":
			var d struct {
				Delta string `json:"delta"`
			}
			json.Unmarshal(bytes.TrimSpace(data), &d)
			text.WriteString(d.Delta)
		case "response.completed":
			if c.Response != nil {
				if c.Response.Model != "" {
					x.Model = c.Response.Model
				}
				x.takeUsage(c.Response.Usage)
			}
		case "error":
			text.WriteString(string(c.Error))
		}
		x.takeUsage(c.Usage)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			flush()
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
		}
	}
	flush()
	x.Response = text.String()
}

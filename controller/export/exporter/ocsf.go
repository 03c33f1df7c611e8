package exporter

import (
	"path"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// OCSF (Open Cybersecurity Schema Framework, schema 1.3) classes the events
// map to. OpenShell emits OCSF; with Spec.OCSF a SIEM gets both in one shape.
const (
	ocsfVersion          = "1.3.0"
	ocsfFileActivity     = 1001 // System Activity: File System Activity
	ocsfProcessActivity  = 1007 // System Activity: Process Activity
	ocsfDetectionFinding = 2004 // Findings: Detection Finding
	ocsfNetworkActivity  = 4001 // Network Activity
	ocsfAppLifecycle     = 6002 // Application Activity: Application Lifecycle
	ocsfAPIActivity      = 6003 // Application Activity: API Activity
)

// OCSF maps one event to an OCSF event (a JSON object).
func OCSF(e *protocol.Event) map[string]any {
	class, activity, activityName := ocsfAPIActivity, 99, e.Kind
	status := 1 // Success
	o := map[string]any{}
	proc := func() map[string]any {
		p := map[string]any{}
		if e.PID != 0 {
			p["pid"] = e.PID
		}
		if e.Binary != "" {
			p["file"] = map[string]any{"path": e.Binary, "name": path.Base(e.Binary)}
			p["name"] = path.Base(e.Binary)
		} else if e.Comm != "" {
			p["name"] = e.Comm
		}
		if len(e.Argv) > 0 {
			p["cmd_line"] = strings.Join(e.Argv, " ")
		}
		if e.Cwd != "" {
			p["working_directory"] = e.Cwd
		}
		if e.UID != nil {
			p["user"] = map[string]any{"uid": itoa(int64(*e.UID))}
		}
		if e.ExecID != "" {
			p["uid"] = e.ExecID
		}
		if e.PPID != 0 || e.ParentExecID != "" {
			pp := map[string]any{}
			if e.PPID != 0 {
				pp["pid"] = e.PPID
			}
			if e.ParentExecID != "" {
				pp["uid"] = e.ParentExecID
			}
			p["parent_process"] = pp
		}
		return p
	}
	switch e.Kind {
	case protocol.KindExec, protocol.KindFork:
		class, activity, activityName = ocsfProcessActivity, 1, "Launch"
		o["process"] = proc()
	case protocol.KindExit:
		class, activity, activityName = ocsfProcessActivity, 2, "Terminate"
		p := proc()
		if e.ExitCode != nil {
			p["exit_code"] = *e.ExitCode
			if *e.ExitCode != 0 {
				status = 2
			}
		}
		if e.Signal != 0 {
			status = 2
			o["status_detail"] = "killed by signal " + itoa(int64(e.Signal))
		}
		o["process"] = p
	case protocol.KindFileOpen, protocol.KindFileWrite, protocol.KindFileUnlink, protocol.KindFileRename,
		protocol.KindFileMkdir, protocol.KindFileRmdir, protocol.KindFileChmod:
		class = ocsfFileActivity
		switch e.Kind {
		case protocol.KindFileOpen:
			activity, activityName = 14, "Open"
		case protocol.KindFileWrite:
			activity, activityName = 3, "Update"
			if strings.Contains(e.Intent, "create") {
				activity, activityName = 1, "Create"
			}
		case protocol.KindFileUnlink, protocol.KindFileRmdir:
			activity, activityName = 4, "Delete"
		case protocol.KindFileRename:
			activity, activityName = 5, "Rename"
		case protocol.KindFileMkdir:
			activity, activityName = 1, "Create"
		case protocol.KindFileChmod:
			activity, activityName = 6, "Set Attributes"
		}
		o["file"] = map[string]any{"path": e.Path, "name": path.Base(e.Path)}
		if e.NewPath != "" {
			o["file_result"] = map[string]any{"path": e.NewPath, "name": path.Base(e.NewPath)}
		}
		o["actor"] = map[string]any{"process": proc()}
		if e.Result == protocol.ResultDenied || e.Result == protocol.ResultError {
			status = 2
			o["status_detail"] = e.Errno
		}
	case protocol.KindNetConnect, protocol.KindPolicy:
		class, activity, activityName = ocsfNetworkActivity, 1, "Open"
		o["dst_endpoint"] = map[string]any{"hostname": e.Host, "port": e.Port}
		o["actor"] = map[string]any{"process": proc()}
		if e.Kind == protocol.KindPolicy {
			action, disposition := 1, "Allowed"
			if e.Result == "deny" {
				action, disposition, status = 2, "Blocked", 2
				activity, activityName = 5, "Refuse"
			}
			o["action_id"], o["disposition"] = action, disposition
			o["firewall_rule"] = map[string]any{"name": e.Policy, "uid": e.Rule}
			if e.Path != "" {
				o["http_request"] = map[string]any{"url": map[string]any{"path": e.Path, "hostname": e.Host, "port": e.Port}}
			}
		}
	case protocol.KindMCPCall:
		class, activity, activityName = ocsfAPIActivity, 99, "tools/call"
		o["api"] = map[string]any{"operation": "tools/call " + e.Tool, "service": map[string]any{"name": e.Server}}
		if e.Result != protocol.ResultOK && e.Result != "allow" {
			status = 2
		}
		if e.DurationNs > 0 {
			o["duration"] = e.DurationNs / 1e6
		}
	case protocol.KindExecCall:
		class, activityName = ocsfAPIActivity, "Exec "+e.State
		o["api"] = map[string]any{"operation": "Exec", "service": map[string]any{"name": "darkshell"}}
		o["process"] = proc()
		if e.Result == protocol.ResultError || e.Signal != 0 || (e.ExitCode != nil && *e.ExitCode != 0) {
			status = 2
		}
	case protocol.KindSync:
		class, activityName = ocsfAPIActivity, "Sync "+e.CallID
		o["api"] = map[string]any{"operation": "Sync", "service": map[string]any{"name": "darkshell"}}
		if e.Result == protocol.ResultError {
			status = 2
		}
	case protocol.KindInference:
		class, activity, activityName = ocsfAPIActivity, 99, "inference"
		o["api"] = map[string]any{"operation": e.Path, "service": map[string]any{"name": e.Host}}
		if e.Result == protocol.ResultError {
			status = 2
		}
		if e.DurationNs > 0 {
			o["duration"] = e.DurationNs / 1e6
		}
	case protocol.KindAlert:
		class, activity, activityName = ocsfDetectionFinding, 1, "Create"
		o["finding_info"] = map[string]any{"title": e.Message, "uid": e.Rule}
	case protocol.KindSandboxState:
		class, activityName = ocsfAppLifecycle, e.State
	}
	o["class_uid"] = class
	o["category_uid"] = class / 1000
	o["activity_id"] = activity
	o["activity_name"] = activityName
	o["type_uid"] = class*100 + activity
	o["time"] = e.Time.UnixMilli()
	o["severity_id"] = 1 // Informational
	if status == 2 || e.Kind == protocol.KindAlert {
		o["severity_id"] = 3 // Medium
	}
	o["status_id"] = status
	if e.Message != "" {
		o["message"] = e.Message
	}
	o["metadata"] = map[string]any{"version": ocsfVersion,
		"product":  map[string]any{"name": "DarkShell", "vendor_name": "bohica-labs", "version": protocol.BuildVersion},
		"log_name": e.Kind, "original_time": e.Time.Format("2006-01-02T15:04:05.000000000Z07:00")}
	o["device"] = map[string]any{"hostname": e.Sandbox, "type_id": 6, "type": "Virtual"}
	o["unmapped"] = map[string]any{"darkshell.kind": e.Kind, "darkshell.source": e.Source, "darkshell.fidelity": e.Fidelity}
	if e.Inference != nil {
		o["unmapped"].(map[string]any)["darkshell.inference"] = e.Inference
	}
	return o
}

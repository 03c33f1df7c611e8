package exporter

import (
	"encoding/json"
	"path"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// appendOCSF appends OCSF(e) as JSON: the very bytes appendJSON (and so
// json.Marshal) makes of the map, keys in sorted order, but written
// straight from the event, without building maps (making, hashing and
// sorting the maps was a quarter of the exporter helper's CPU in
// bench-export). TestAppendOCSFMatchesMap and FuzzAppendOCSF hold it to
// appendJSON(OCSF(e)); OCSF stays the mapping's readable definition, and a
// change to one must be made to the other.
func appendOCSF(dst []byte, e *protocol.Event) []byte {
	class, activity, activityName := ocsfAPIActivity, 99, e.Kind
	status := 1
	const (
		noProc    = iota
		procTop   // "process": {...}
		procActor // "actor": {"process": {...}}
	)
	var (
		procAt          = noProc
		exitCode        bool // the process has exit_code (exit events)
		statusDetail    string
		hasStatusDetail bool
		file, net       bool
		policy, deny    bool
		api             bool
		apiOp, apiSvc   string
		finding         bool
		duration        bool
	)
	switch e.Kind {
	case protocol.KindExec, protocol.KindFork:
		class, activity, activityName = ocsfProcessActivity, 1, "Launch"
		procAt = procTop
	case protocol.KindExit:
		class, activity, activityName = ocsfProcessActivity, 2, "Terminate"
		procAt = procTop
		if e.ExitCode != nil {
			exitCode = true
			if *e.ExitCode != 0 {
				status = 2
			}
		}
		if e.Signal != 0 {
			status = 2
			statusDetail, hasStatusDetail = "killed by signal "+itoa(int64(e.Signal)), true
		}
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
		file, procAt = true, procActor
		if e.Result == protocol.ResultDenied || e.Result == protocol.ResultError {
			status = 2
			statusDetail, hasStatusDetail = e.Errno, true
		}
	case protocol.KindNetConnect, protocol.KindPolicy:
		class, activity, activityName = ocsfNetworkActivity, 1, "Open"
		net, procAt = true, procActor
		if e.Kind == protocol.KindPolicy {
			policy = true
			if e.Result == "deny" {
				deny, status = true, 2
				activity, activityName = 5, "Refuse"
			}
		}
	case protocol.KindMCPCall:
		class, activity, activityName = ocsfAPIActivity, 99, "tools/call"
		api, apiOp, apiSvc = true, "tools/call "+e.Tool, e.Server
		if e.Result != protocol.ResultOK && e.Result != "allow" {
			status = 2
		}
		duration = e.DurationNs > 0
	case protocol.KindExecCall:
		class, activityName = ocsfAPIActivity, "Exec "+e.State
		api, apiOp, apiSvc = true, "Exec", "darkshell"
		procAt = procTop
		if e.Result == protocol.ResultError || e.Signal != 0 || (e.ExitCode != nil && *e.ExitCode != 0) {
			status = 2
		}
	case protocol.KindSync:
		class, activityName = ocsfAPIActivity, "Sync "+e.CallID
		api, apiOp, apiSvc = true, "Sync", "darkshell"
		if e.Result == protocol.ResultError {
			status = 2
		}
	case protocol.KindInference:
		class, activity, activityName = ocsfAPIActivity, 99, "inference"
		api, apiOp, apiSvc = true, e.Path, e.Host
		if e.Result == protocol.ResultError {
			status = 2
		}
		duration = e.DurationNs > 0
	case protocol.KindAlert:
		class, activity, activityName = ocsfDetectionFinding, 1, "Create"
		finding = true
	case protocol.KindSandboxState:
		class, activityName = ocsfAppLifecycle, e.State
	}
	severity := 1 // Informational
	if status == 2 || e.Kind == protocol.KindAlert {
		severity = 3 // Medium
	}

	// Keys in sorted order, as appendJSON writes a map.
	dst = append(dst, '{')
	if policy {
		action, disposition := 1, "Allowed"
		if deny {
			action, disposition = 2, "Blocked"
		}
		dst = appendKeyInt(dst, `"action_id":`, int64(action))
		dst = appendKeyInt(dst, `,"activity_id":`, int64(activity))
		dst = appendKeyStr(dst, `,"activity_name":`, activityName)
		dst = appendActor(dst, e, procAt == procActor, exitCode)
		dst = appendKeyInt(dst, `,"category_uid":`, int64(class/1000))
		dst = appendKeyInt(dst, `,"class_uid":`, int64(class))
		dst = appendDevice(dst, e)
		dst = appendKeyStr(dst, `,"disposition":`, disposition)
	} else {
		dst = appendKeyInt(dst, `"activity_id":`, int64(activity))
		dst = appendKeyStr(dst, `,"activity_name":`, activityName)
		dst = appendActor(dst, e, procAt == procActor, exitCode)
		if api {
			dst = append(dst, `,"api":{"operation":`...)
			dst = appendJSONString(dst, apiOp)
			dst = append(dst, `,"service":{"name":`...)
			dst = appendJSONString(dst, apiSvc)
			dst = append(dst, '}', '}')
		}
		dst = appendKeyInt(dst, `,"category_uid":`, int64(class/1000))
		dst = appendKeyInt(dst, `,"class_uid":`, int64(class))
		dst = appendDevice(dst, e)
	}
	if net {
		dst = append(dst, `,"dst_endpoint":{"hostname":`...)
		dst = appendJSONString(dst, e.Host)
		dst = appendKeyInt(dst, `,"port":`, int64(e.Port))
		dst = append(dst, '}')
	}
	if duration {
		dst = appendKeyInt(dst, `,"duration":`, e.DurationNs/1e6)
	}
	if file {
		dst = append(dst, `,"file":`...)
		dst = appendNamePath(dst, e.Path)
		if e.NewPath != "" {
			dst = append(dst, `,"file_result":`...)
			dst = appendNamePath(dst, e.NewPath)
		}
	}
	if finding {
		dst = append(dst, `,"finding_info":{"title":`...)
		dst = appendJSONString(dst, e.Message)
		dst = appendKeyStr(dst, `,"uid":`, e.Rule)
		dst = append(dst, '}')
	}
	if policy {
		dst = append(dst, `,"firewall_rule":{"name":`...)
		dst = appendJSONString(dst, e.Policy)
		dst = appendKeyStr(dst, `,"uid":`, e.Rule)
		dst = append(dst, '}')
		if e.Path != "" {
			dst = append(dst, `,"http_request":{"url":{"hostname":`...)
			dst = appendJSONString(dst, e.Host)
			dst = appendKeyStr(dst, `,"path":`, e.Path)
			dst = appendKeyInt(dst, `,"port":`, int64(e.Port))
			dst = append(dst, '}', '}')
		}
	}
	if e.Message != "" {
		dst = appendKeyStr(dst, `,"message":`, e.Message)
	}
	dst = append(dst, `,"metadata":{"log_name":`...)
	dst = appendJSONString(dst, e.Kind)
	dst = append(dst, `,"original_time":"`...)
	dst = e.Time.AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00") // digits and -+:TZ: nothing to escape
	dst = append(dst, `","product":{"name":"DarkShell","vendor_name":"bohica-labs","version":`...)
	dst = appendJSONString(dst, protocol.BuildVersion)
	dst = append(dst, `},"version":"`+ocsfVersion+`"}`...)
	if procAt == procTop {
		dst = append(dst, `,"process":`...)
		dst = appendProcess(dst, e, exitCode)
	}
	dst = appendKeyInt(dst, `,"severity_id":`, int64(severity))
	if hasStatusDetail {
		dst = appendKeyStr(dst, `,"status_detail":`, statusDetail)
	}
	dst = appendKeyInt(dst, `,"status_id":`, int64(status))
	dst = appendKeyInt(dst, `,"time":`, e.Time.UnixMilli())
	dst = appendKeyInt(dst, `,"type_uid":`, int64(class*100+activity))
	dst = append(dst, `,"unmapped":{"darkshell.fidelity":`...)
	dst = appendJSONString(dst, e.Fidelity)
	if e.Inference != nil {
		b, err := json.Marshal(e.Inference)
		if err != nil {
			panic(err) // as appendJSON: the type always encodes
		}
		dst = append(dst, `,"darkshell.inference":`...)
		dst = append(dst, b...)
	}
	dst = appendKeyStr(dst, `,"darkshell.kind":`, e.Kind)
	dst = appendKeyStr(dst, `,"darkshell.source":`, e.Source)
	return append(dst, '}', '}')
}

func appendKeyInt(dst []byte, key string, n int64) []byte {
	dst = append(dst, key...)
	return strconv.AppendInt(dst, n, 10)
}

func appendKeyStr(dst []byte, key, s string) []byte {
	dst = append(dst, key...)
	return appendJSONString(dst, s)
}

// appendNamePath appends {"name":BASE,"path":P}.
func appendNamePath(dst []byte, p string) []byte {
	dst = append(dst, `{"name":`...)
	dst = appendJSONString(dst, path.Base(p))
	dst = appendKeyStr(dst, `,"path":`, p)
	return append(dst, '}')
}

// appendActor appends ,"actor":{"process":{...}} when on.
func appendActor(dst []byte, e *protocol.Event, on, exitCode bool) []byte {
	if !on {
		return dst
	}
	dst = append(dst, `,"actor":{"process":`...)
	dst = appendProcess(dst, e, exitCode)
	return append(dst, '}')
}

func appendDevice(dst []byte, e *protocol.Event) []byte {
	dst = append(dst, `,"device":{"hostname":`...)
	dst = appendJSONString(dst, e.Sandbox)
	return append(dst, `,"type":"Virtual","type_id":6}`...)
}

// appendProcess appends the process object OCSF's proc makes (with
// exit_code when exitCode), keys sorted.
func appendProcess(dst []byte, e *protocol.Event, exitCode bool) []byte {
	dst = append(dst, '{')
	n := len(dst)
	sep := func() {
		if len(dst) > n {
			dst = append(dst, ',')
		}
	}
	if len(e.Argv) > 0 {
		dst = appendKeyStr(dst, `"cmd_line":`, strings.Join(e.Argv, " "))
	}
	if exitCode {
		sep()
		dst = appendKeyInt(dst, `"exit_code":`, int64(*e.ExitCode))
	}
	if e.Binary != "" {
		base := path.Base(e.Binary)
		sep()
		dst = append(dst, `"file":{"name":`...)
		dst = appendJSONString(dst, base)
		dst = appendKeyStr(dst, `,"path":`, e.Binary)
		dst = appendKeyStr(dst, `},"name":`, base)
	} else if e.Comm != "" {
		sep()
		dst = appendKeyStr(dst, `"name":`, e.Comm)
	}
	if e.PPID != 0 || e.ParentExecID != "" {
		sep()
		dst = append(dst, `"parent_process":{`...)
		if e.PPID != 0 {
			dst = appendKeyInt(dst, `"pid":`, int64(e.PPID))
		}
		if e.ParentExecID != "" {
			if e.PPID != 0 {
				dst = append(dst, ',')
			}
			dst = appendKeyStr(dst, `"uid":`, e.ParentExecID)
		}
		dst = append(dst, '}')
	}
	if e.PID != 0 {
		sep()
		dst = appendKeyInt(dst, `"pid":`, int64(e.PID))
	}
	if e.ExecID != "" {
		sep()
		dst = appendKeyStr(dst, `"uid":`, e.ExecID)
	}
	if e.UID != nil {
		sep()
		dst = append(dst, `"user":{"uid":"`...)
		dst = strconv.AppendInt(dst, int64(*e.UID), 10)
		dst = append(dst, '"', '}')
	}
	if e.Cwd != "" {
		sep()
		dst = appendKeyStr(dst, `"working_directory":`, e.Cwd)
	}
	return append(dst, '}')
}

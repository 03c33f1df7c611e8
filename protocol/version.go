package protocol

// BuildVersion names this build of darkshell and sandboxd. Release and `make`
// builds set it with -ldflags "-X github.com/bohica-labs/darkshell/protocol.BuildVersion=...";
// both binaries of one build carry the same value, which is how the controller
// knows whether the sandboxd it finds is its own.
var BuildVersion = "dev"

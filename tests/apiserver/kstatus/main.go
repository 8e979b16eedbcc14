// kstatus reads Kubernetes objects as JSON, one per line, on stdin and prints, for each, the
// status that sigs.k8s.io/cli-utils' kstatus computes (the library Flux uses for health checks):
// `<Status>\t<message>`. The tests feed it edgebind's objects to check that a terminal failure
// reads as Failed (Flux: Stalled), progress as InProgress and Ready as Current.
package main

import (
	"bufio"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	// Whole numbers as int64, as the API machinery reads objects (not float64).
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		var obj map[string]interface{}
		if err := json.Unmarshal(in.Bytes(), &obj); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: not a JSON object: %v\n", err)
			os.Exit(2)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Printf("Error\t%v\n", err)
			continue
		}
		fmt.Printf("%s\t%s\n", res.Status, res.Message)
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(2)
	}
}

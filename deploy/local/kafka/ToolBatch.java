/*
 * Runs a Kafka command-line tool several times in one JVM, for stack.sh with
 * KAFKA_AUTH=scram: each line of standard input is the arguments of one call,
 * separated by TABs. A JVM with Kafka's classpath takes seconds to start, the
 * ACL table needs about ten AclCommand calls, and arguments read from stdin
 * keep passwords out of the process list.
 *
 * Usage: java -cp "<this class>:<kafka libs>/*" ToolBatch TOOL_CLASS < calls
 *
 * The tools end the JVM with a non-zero status when a call fails, so the batch
 * stops at the first failure.
 */

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;

public final class ToolBatch {
    private ToolBatch() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: ToolBatch TOOL_CLASS < calls (one per line, arguments TAB-separated)");
            System.exit(64);
        }
        Method tool = Class.forName(args[0]).getMethod("main", String[].class);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isEmpty()) {
                continue;
            }
            try {
                tool.invoke(null, (Object) line.split("\t", -1));
            } catch (InvocationTargetException error) {
                error.getCause().printStackTrace();
                System.exit(1);
            }
        }
        // Ends the JVM even if a tool left a non-daemon thread running.
        System.exit(0);
    }
}

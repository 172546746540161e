/*
 * Netty 4.1 echo server for the echo benchmark (bench/echo), written the way
 * Netty's own examples are: a ServerBootstrap, a ChannelInitializer, and an
 * echo handler that writes in channelRead and flushes in channelReadComplete
 * (one flush per read batch, like the C servers' one write per read).
 *
 *   java -cp <netty jars>:<classes> EchoServer <port> <raw|framed>
 *
 * raw:    pipeline = [echo]
 * framed: pipeline = [LengthFieldBasedFrameDecoder(16 MiB, 0, 4, 0, 4),
 *                     LengthFieldPrepender(4), echo]
 *         the usual Netty pair for a 4-byte big-endian length prefix: the
 *         decoder strips the header, the prepender writes it again.
 *
 * Transport: NIO (Debian ships no netty native epoll library). One
 * NioEventLoopGroup with ONE thread serves as boss and worker, so the server
 * is one event loop like the C servers (Netty's default would be
 * 2 x cores worker threads; on the single pinned CPU of the benchmark they
 * would only take turns). Everything else is Netty's default: the pooled
 * direct allocator, the adaptive receive buffer (at most 64 KiB per read),
 * the leak detector in its default sampling mode. TCP_NODELAY is set
 * explicitly (Netty's default too).
 *
 * Prints "ready port=N mode=M pid=P" once listening; SIGTERM or SIGINT closes
 * the server channel and shuts the group down, and the JVM exits with 0.
 */
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.LengthFieldBasedFrameDecoder;
import io.netty.handler.codec.LengthFieldPrepender;
import io.netty.util.Version;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;
import sun.misc.Signal;

public final class EchoServer {
    private static final int FRAME_MAX = 16 * 1024 * 1024;

    @Sharable
    static final class EchoHandler extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            ctx.write(msg);
        }

        @Override
        public void channelReadComplete(ChannelHandlerContext ctx) {
            ctx.flush();
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !(args[1].equals("raw") || args[1].equals("framed"))) {
            System.err.println("usage: EchoServer <port> <raw|framed>");
            System.exit(2);
        }
        final int port = Integer.parseInt(args[0]);
        final boolean framed = args[1].equals("framed");
        final EchoHandler echo = new EchoHandler();
        EventLoopGroup group = new NioEventLoopGroup(1);
        try {
            ServerBootstrap b = new ServerBootstrap();
            b.group(group)
                .channel(NioServerSocketChannel.class)
                .option(ChannelOption.SO_BACKLOG, 1024)
                .option(ChannelOption.SO_REUSEADDR, true)
                .childOption(ChannelOption.TCP_NODELAY, true)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        ChannelPipeline p = ch.pipeline();
                        if (framed) {
                            p.addLast(new LengthFieldBasedFrameDecoder(FRAME_MAX, 0, 4, 0, 4));
                            p.addLast(new LengthFieldPrepender(4));
                        }
                        p.addLast(echo);
                    }
                });
            final Channel server = b.bind("127.0.0.1", port).sync().channel();
            Signal.handle(new Signal("TERM"), s -> server.close());
            Signal.handle(new Signal("INT"), s -> server.close());
            String version = Version.identify().containsKey("netty-transport")
                ? Version.identify().get("netty-transport").artifactVersion() : "?";
            System.err.println("echo_server_netty: Netty " + version + " NIO, Java "
                + System.getProperty("java.version") + ", "
                + Runtime.getRuntime().availableProcessors() + " CPU(s) visible");
            System.out.println("ready port=" + ((InetSocketAddress) server.localAddress()).getPort()
                + " mode=" + args[1] + " pid=" + ProcessHandle.current().pid());
            System.out.flush();
            server.closeFuture().sync();
        } finally {
            group.shutdownGracefully(0, 2, TimeUnit.SECONDS).sync();
        }
        System.err.println("echo_server_netty: exiting");
    }
}
